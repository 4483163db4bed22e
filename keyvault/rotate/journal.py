"""The rotation journal: where a rotation is, kept beside the secret in the primary backend.

The journal is a flat map of short strings (fingerprints, hints, key ids, versions, UTC
timestamps, counts; never a key value), written through the primary backend's
`write_state(state, expected_token)`. That compare-and-swap is also the lock: a rotator owns
the journal while `phase` is `running` and its lease is fresh; a second rotator that reads
such a journal, or loses the race to write it, stops with `RotationInProgress` (exit 3) and
changes nothing. A rotator that died (kill -9, a lost container) is recognised by its expired
lease, or at once when it ran on this host and its pid is gone, and the next run takes over.

Every change of step or phase is also appended to the audit log (`keyvault.audit`) when
`KEYVAULT_AUDIT_LOG` names one, as `rotate.journal.<step>` with the environment, the rotation
id, the phase and the old and new keys' fingerprints, hints and ids: what the journal holds,
never a value. The engine's own `rotate.<step>` records say what each step did; these say
where the rotation stood, written only after the journal write succeeded.

Values stay within letters, digits and `_ . : / = + @ -` and under 256 characters so every
backend can keep them as tags, labels or custom metadata.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from keyvault.backends import Backend
from keyvault.errors import ConflictError, KeyvaultError, RotationInProgress

FORMAT = "1"
STEPS = ("plan", "create", "verify-new", "update", "verify-deploy", "grace", "revoke", "archive", "done")
# Steps whose work has not touched any target yet: resuming them starts over from plan.
BEFORE_COMMIT = ("plan", "create")
RUNNING = "running"  # an owner is working on it
PARKED = "parked"  # waiting for a time or a person; the next run continues
ROLLING_BACK = "rolling-back"
DONE = "done"
ROLLED_BACK = "rolled-back"
ABORTED = "aborted"
TERMINAL = (DONE, ROLLED_BACK, ABORTED)
LEASE = timedelta(minutes=10)
# journal fields an audit record of a transition carries (all short non-secret strings)
AUDITED = ("rotation", "env", "phase", "note", "old_fp", "old_hint", "old_id", "new_fp", "new_hint", "new_id")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_deadline(start: datetime, delay: timedelta) -> str:
    """start + delay rounded up to the second (a grace period is never cut short); no delay
    means due already."""
    if not delay:
        return iso(start)
    moment = start + delay
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return iso(moment)


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def new_rotation_id(moment: datetime) -> str:
    return f"r{moment.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname().split(".")[0][:63] or "localhost", os.getpid())

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        if not text or "/" not in text:
            return None
        host, _, pid = text.rpartition("/")
        return cls(host, int(pid)) if pid.isdigit() else None

    def encode(self) -> str:
        return f"{self.host}/{self.pid}"

    def alive_here(self) -> bool | None:
        """True/False when this host can tell (same host), None when it cannot."""
        if self.host != Owner.me().host:
            return None
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def describe_holder(state: dict[str, str]) -> str:
    owner = state.get("owner", "?")
    return (
        f"rotation in progress by {owner} (started {state.get('owner_started', '?')}, "
        f"step {state.get('step', '?')}, last progress {state.get('updated_at', '?')})"
    )


class Journal:
    """The journal of one environment's rotation, read and written through its primary."""

    def __init__(self, backend: Backend, *, lease: timedelta = LEASE, clock: Callable[[], datetime] = utcnow) -> None:
        self.backend = backend
        self.lease = lease
        self.clock = clock
        self.me = Owner.me()
        self.state: dict[str, str] | None = None
        self.token: str | None = None
        self._audit_failed = False

    # -- reading -------------------------------------------------------------------------
    def load(self) -> dict[str, str] | None:
        state, token = self.backend.read_state()
        if state is not None:
            version = state.get("v")
            if version != FORMAT:
                raise KeyvaultError(
                    f"{self.backend.source}: the rotation journal has format {version!r}; this keyvault "
                    f"reads format {FORMAT!r} (upgrade keyvault, or inspect it with `keyvault status`)"
                )
        self.state, self.token = (dict(state) if state is not None else None), token
        return self.state

    def held_by_other(self, state: dict[str, str] | None) -> bool:
        """Whether a live rotator other than this process owns the journal."""
        if not state or state.get("phase") not in (RUNNING, ROLLING_BACK):
            return False
        owner = Owner.parse(state.get("owner"))
        if owner is None or owner == self.me:
            return False
        here = owner.alive_here()
        if here is not None:
            return here
        lease_until = parse_iso(state.get("lease_until"))
        return lease_until is None or lease_until > self.clock()

    # -- writing -------------------------------------------------------------------------
    def claim(self, fresh: Callable[[], dict[str, str]], *, resume_only: bool = False) -> tuple[dict[str, str], bool]:
        """Own the journal: continue the rotation it records, or begin `fresh()`.

        Returns (state, resumed). Raises RotationInProgress when a live rotator holds it or
        wins the compare-and-swap first.
        """
        state = self.load()
        if self.held_by_other(state):
            raise RotationInProgress(f"{self.backend.source}: {describe_holder(state or {})}")
        resumable = state is not None and state.get("phase") not in TERMINAL
        if resume_only and not resumable:
            last = f" (last rotation: {state.get('phase')})" if state else ""
            raise KeyvaultError(f"{self.backend.source}: no rotation to resume{last}")
        if resumable:
            new = dict(state or {})
            if new.get("phase") not in (ROLLING_BACK,):
                new["phase"] = RUNNING
        else:
            new = fresh()
            new.setdefault("v", FORMAT)
        now = self.clock()
        new.update(owner=self.me.encode(), owner_started=iso(now))
        self._write(new, lost=lambda: self._lost_race())
        return new, resumable

    def save(self, **fields: str | None) -> dict[str, str]:
        """Merge fields (None deletes one) and write with compare-and-swap; renews the lease."""
        if self.state is None:
            raise KeyvaultError("internal: journal saved before it was claimed")
        new = dict(self.state)
        for key, value in fields.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
        self._write(new, lost=self._taken_over)
        return new

    def release(self, phase: str, **fields: str | None) -> dict[str, str]:
        """Stop owning the journal: parked (anyone may continue) or a terminal phase."""
        return self.save(phase=phase, owner=None, owner_started=None, lease_until=None, **fields)

    def _write(self, new: dict[str, str], lost: Callable[[], KeyvaultError]) -> None:
        now = self.clock()
        new["updated_at"] = iso(now)
        if new.get("owner"):
            new["lease_until"] = iso(now + self.lease)
        try:
            self.token = self.backend.write_state(new, self.token)
        except ConflictError:
            raise lost() from None
        before, self.state = self.state, new
        self._audit(before, new)

    def _audit(self, before: dict[str, str] | None, after: dict[str, str]) -> None:
        """Record a change of step or phase in the audit log, when one is configured.

        The journal write already happened: a log that cannot be written must not strand the
        targets between keys, so the failure is logged once and the rotation goes on."""
        if not os.environ.get("KEYVAULT_AUDIT_LOG") or self._audit_failed:
            return
        before = before or {}
        step, phase = after.get("step") or "plan", after.get("phase") or RUNNING
        if before.get("step") == after.get("step") and before.get("phase") == after.get("phase"):
            return
        from keyvault.audit import AuditLog

        fields = {name: after[name] for name in AUDITED if after.get(name)}
        if before.get("step") and before.get("step") != step:
            fields["previous_step"] = before["step"]
        fields.update(step=step, phase=phase, primary=str(self.backend.source))
        try:
            AuditLog().append(f"rotate.journal.{step}", **fields)
        except (KeyvaultError, OSError) as exc:
            self._audit_failed = True
            logging.getLogger("keyvault").warning("keyvault: audit log not written (%s); the rotation continues", exc)

    def _lost_race(self) -> KeyvaultError:
        state = self.load()
        if state and state.get("owner"):
            return RotationInProgress(f"{self.backend.source}: {describe_holder(state)}")
        return RotationInProgress(f"{self.backend.source}: another rotator changed the journal at the same moment; run again")

    def _taken_over(self) -> KeyvaultError:
        state = self.load()
        holder = describe_holder(state) if state else "the journal was removed"
        return RotationInProgress(
            f"{self.backend.source}: this run lost the rotation journal ({holder}); it stopped "
            "without further changes"
        )
