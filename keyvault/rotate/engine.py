"""The rotation driver: claim the journal, run the steps it says are next, stop cleanly.

Steps (keyvault.rotate.steps) are plan, create, verify-new, update, verify-deploy, grace,
revoke, archive, done. Each one does its work idempotently, then records in the journal which
step comes next; the driver runs whatever the journal names, so a fresh run, a rerun after a
crash and `--resume` are the same loop. A step stops the loop by returning a `Result` (parked
until a time or a person, done, nothing to do) or by raising: an error leaves the rotation
parked at that step for the next run, a failed deploy rolls every target back first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyvault.errors import KeyvaultError, RotationInProgress
from keyvault.keys import Secret
from keyvault.policy import Environment, Policy
from keyvault.rotate import crash
from keyvault.rotate.apikeys import KeyService
from keyvault.rotate.journal import (
    ABORTED, BEFORE_COMMIT, FORMAT, PARKED, ROLLING_BACK, RUNNING, TERMINAL, Journal, iso,
    new_rotation_id, utcnow,
)
from keyvault.rotate.newkey import KeyInput
from keyvault.rotate.targets import Handle, handles, read_previous


@dataclass
class Event:
    """One progress line: which step, which target, which key (hint), how long it took."""

    step: str
    message: str
    target: str | None = None
    hint: str | None = None
    seconds: float | None = None

    def text(self) -> str:
        parts = [f"[{self.step}]"]
        if self.target:
            parts.append(self.target)
        if self.hint:
            parts.append(self.hint)
        parts.append(self.message)
        if self.seconds is not None:
            parts.append(f"({self.seconds:.2f}s)")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "message": self.message, "target": self.target, "hint": self.hint,
                "seconds": round(self.seconds, 4) if self.seconds is not None else None}


@dataclass
class Options:
    env: str | None = None
    dry_run: bool = False
    resume: bool = False
    interactive: bool = False
    key_input: KeyInput = field(default_factory=KeyInput)
    wait: bool | None = None  # sleep through the grace period; default: interactive runs do
    report: Callable[[Event], None] | None = None
    say: Callable[[str], None] | None = None  # instructions for the person (stderr)
    confirm: Callable[[str], bool] | None = None  # ask the person a yes/no question
    incident: bool = False  # the old key is already deactivated (leak response): no grace
    expect_old: str | None = None  # fingerprint the targets must hold (incident)
    new_key: Secret | None = None  # a new key already read by the caller (incident)


@dataclass
class Result:
    env: str
    phase: str  # done | parked | rolled-back | aborted | not-due | due | dry-run
    step: str
    summary: str
    exit_code: int = 0
    rotation: str | None = None
    old_hint: str | None = None
    new_hint: str | None = None
    old_id: str | None = None
    new_id: str | None = None
    waiting_until: str | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env, "phase": self.phase, "step": self.step, "summary": self.summary,
            "exit_code": self.exit_code, "rotation": self.rotation, "old_hint": self.old_hint,
            "new_hint": self.new_hint, "old_id": self.old_id, "new_id": self.new_id,
            "waiting_until": self.waiting_until, "targets": self.targets,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "events": [e.to_dict() for e in self.events],
        }


class Abort(KeyvaultError):
    """A step ended the rotation for good (journal already released as aborted)."""


class Run:
    """Everything one rotation of one environment needs; the steps read and update it."""

    def __init__(self, policy: Policy, options: Options, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.policy = policy
        self.options = options
        self.env: Environment = policy.environment(options.env)
        self.items: list[Handle] = handles(self.env.targets)
        self.primary = self.items[0]
        self.clock = clock
        self.journal = Journal(self.primary.backend, clock=clock)
        self._keys: KeyService | None = None
        self.old: Secret | None = None
        self.new: Secret | None = None
        self.events: list[Event] = []
        self.timings: dict[str, float] = {}
        self._audit_failed = False

    # -- shared helpers ------------------------------------------------------------------
    @property
    def keys(self) -> KeyService:
        if self._keys is None:
            self._keys = KeyService.for_env(self.policy, self.env)
        return self._keys

    @property
    def state(self) -> dict[str, str]:
        assert self.journal.state is not None
        return self.journal.state

    @property
    def interactive(self) -> bool:
        return self.options.interactive

    def emit(self, step: str, message: str, target: str | None = None, hint: str | None = None,
             seconds: float | None = None) -> None:
        event = Event(step, message, target, hint, seconds)
        self.events.append(event)
        if self.options.report:
            self.options.report(event)
        self._audit(event)

    def _audit(self, event: Event) -> None:
        """Append the event to the audit log when one is configured (KEYVAULT_AUDIT_LOG).

        A rotation is not stopped half-way because its audit trail cannot be written: that
        would strand targets between keys. The failure is said once, and the rotation goes on.
        """
        import os

        if not os.environ.get("KEYVAULT_AUDIT_LOG") or self._audit_failed:
            return
        from keyvault.audit import AuditLog

        state = self.journal.state or {}
        fields = {k: v for k, v in (("rotation", state.get("rotation")), ("env", self.env.name),
                                    ("target", event.target), ("hint", event.hint), ("message", event.message),
                                    ("seconds", round(event.seconds, 4) if event.seconds is not None else None))
                  if v is not None}
        try:
            AuditLog().append(f"rotate.{event.step}", **fields)
        except KeyvaultError as exc:
            self._audit_failed = True
            self.say(f"warning: audit log not written ({exc}); the rotation continues")

    def say(self, text: str) -> None:
        if self.options.say:
            self.options.say(text)

    def now(self) -> datetime:
        return self.clock()

    def result(self, phase: str, summary: str, exit_code: int = 0, waiting_until: str | None = None) -> Result:
        s = self.journal.state or {}
        return Result(
            env=self.env.name, phase=phase, step=s.get("step", "plan"), summary=summary, exit_code=exit_code,
            rotation=s.get("rotation"), old_hint=s.get("old_hint") or (self.old.hint if self.old else None),
            new_hint=s.get("new_hint") or (self.new.hint if self.new else None), old_id=s.get("old_id"),
            new_id=s.get("new_id"), waiting_until=waiting_until, targets=[{"source": h.uri} for h in self.items],
            timings=dict(self.timings), events=list(self.events),
        )

    def abort(self, code: str, message: str) -> Abort:
        """End the rotation for good: release the journal as aborted and report why."""
        self.journal.release(ABORTED, note=code)
        return Abort(message)

    def park(self, note: str, summary: str, waiting_until: str | None = None) -> Result:
        self.journal.release(PARKED, note=note, waiting_until=waiting_until)
        return self.result(PARKED, summary, 0, waiting_until)

    def recover_new(self) -> Secret:
        """The new key's value: from memory, else wherever a target still holds it."""
        want = self.state.get("new_fp")
        if self.new is not None and self.new.fingerprint == want:
            return self.new
        for h in self.items:
            pending = h.backend.read_pending()
            if pending is not None and pending.secret.fingerprint == want:
                self.new = pending.secret
                return self.new
            current = h.read()
            if current.secret.fingerprint == want:
                self.new = current.secret
                return self.new
        for h in self.items:
            prev = read_previous(h)
            if prev is not None and prev.fingerprint == want:
                self.new = prev
                return self.new
        raise KeyvaultError(
            f"the new key {self.state.get('new_hint')} is no longer held by any target (its pending "
            f"slot on {self.primary.uri} was emptied outside keyvault); stage it again with "
            "`keyvault stage`, or clear this rotation"
        )

    def recover_old(self) -> Secret | None:
        """The old key's value when still readable (for the 401 confirmation), else None."""
        want = self.state.get("old_fp")
        if self.old is not None and self.old.fingerprint == want:
            return self.old
        for h in self.items:
            prev = read_previous(h)
            if prev is not None and prev.fingerprint == want:
                self.old = prev
                return prev
        return None

    def due_now(self) -> Any:
        from keyvault.rotate.due import due

        from keyvault.rotate.due import deployed_at

        current = self.primary.read()
        created = current.created or deployed_at(self.journal.state, current.secret.fingerprint)
        expires = None
        try:
            info = self.keys.find(current.secret, self.env.workspace_id) if self.keys.admin else None
        except KeyvaultError:
            info = None
        if info is not None:
            created = info.created_at or created
            expires = info.expires_at
        return due(self.policy, created, expires, self.now())

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> Result:
        from keyvault.rotate import steps

        if self.options.dry_run:
            return steps.dry_run(self)
        state = self.journal.load()
        resumable = state is not None and state.get("phase") not in TERMINAL
        if not resumable:
            if self.options.resume:
                last = f" (last rotation: {state.get('phase')} at step {state.get('step')})" if state else ""
                raise KeyvaultError(f"{self.primary.uri}: no rotation to resume{last}")
            if self.options.new_key is None and not self.interactive:
                # Read a supplied key before touching the journal: a bad paste or a failing
                # command then changes nothing (an interactive prompt comes after the claim,
                # so nobody pastes a key only to learn another rotation is running).
                from keyvault.rotate.newkey import obtain

                spec = self.options.key_input
                self.options.new_key = obtain(KeyInput(fd=spec.fd, command=spec.command, stdin=spec.stdin))
            early = steps.nothing_to_do(self)
            if early is not None:
                return early
        elif self.journal.held_by_other(state):
            from keyvault.rotate.journal import describe_holder

            raise RotationInProgress(f"{self.primary.uri}: {describe_holder(state or {})}")

        def fresh() -> dict[str, str]:
            now = self.now()
            return {"v": FORMAT, "rotation": new_rotation_id(now), "env": self.env.name, "phase": RUNNING,
                    "step": "plan", "started": iso(now), "targets": str(len(self.items))}

        state, resumed = self.journal.claim(fresh, resume_only=self.options.resume)
        if resumed:
            self.emit(state.get("step", "plan"), f"resuming rotation {state.get('rotation')} "
                      f"(was {state.get('note') or state.get('phase')})")
        if state.get("step") in BEFORE_COMMIT and state.get("phase") != ROLLING_BACK:
            # Nothing outside the pending slot has changed yet: plan again from what the
            # targets hold now.
            self.journal.save(step="plan")
        try:
            return self._loop()
        except (RotationInProgress, Abort):
            raise
        except KeyvaultError as exc:
            self._park_after_error(exc)
            raise
        finally:
            if self._keys is not None:
                self._keys.close()

    def _loop(self) -> Result:
        from keyvault.rotate import steps

        while True:
            state = self.state
            if state.get("phase") == ROLLING_BACK:
                return steps.finish_rollback(self, state.get("note") or "rollback")
            step = state.get("step", "plan")
            function = steps.STEPS.get(step)
            if function is None:
                raise KeyvaultError(f"{self.primary.uri}: the journal names an unknown step {step!r}")
            crash.point(step)
            started = time.monotonic()
            outcome = function(self)
            self.timings[step] = self.timings.get(step, 0.0) + time.monotonic() - started
            if outcome is not None:
                return outcome

    def _park_after_error(self, exc: KeyvaultError) -> None:
        """Leave the rotation where it stopped, free for the next run to continue."""
        state = self.journal.state
        if not state or state.get("owner") != self.journal.me.encode() or state.get("phase") not in (RUNNING, ROLLING_BACK):
            return
        step = state.get("step", "plan")
        try:
            if step in BEFORE_COMMIT and not state.get("new_fp"):
                self.journal.release(ABORTED, note=f"error-at-{step}")
            elif state.get("phase") == ROLLING_BACK:
                self.journal.save(owner=None, owner_started=None, lease_until=None)
            else:
                self.journal.release(PARKED, note=f"error-at-{step}")
        except KeyvaultError:
            pass  # the original error is the one to report


def rotate(policy: Policy, options: Options | None = None) -> Result:
    """Rotate one environment's key (see the module docstring); the library entry point."""
    return Run(policy, options or Options()).run()
