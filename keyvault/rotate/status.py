"""`keyvault status`: what every target holds, whether they agree, when the key is due, whether
the API still accepts it, and any rotation in progress. Read-only; an unreadable target or an
unreachable API is reported in place, never fatal to the rest of the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyvault.errors import KeyvaultError
from keyvault.policy import Environment, Policy
from keyvault.rotate.due import Due, due
from keyvault.rotate.journal import TERMINAL, iso, utcnow


@dataclass
class TargetStatus:
    source: str
    hint: str | None = None
    fingerprint: str | None = None
    version: str | None = None
    created: datetime | None = None
    age_days: float | None = None
    pending_hint: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "hint": self.hint,
            "fingerprint": self.fingerprint[:12] if self.fingerprint else None,
            "version": self.version, "created": iso(self.created) if self.created else None,
            "age_days": round(self.age_days, 1) if self.age_days is not None else None,
            "pending_hint": self.pending_hint, "error": self.error,
        }


@dataclass
class EnvStatus:
    name: str
    targets: list[TargetStatus] = field(default_factory=list)
    agree: bool = False
    due: Due | None = None
    api: dict[str, Any] = field(default_factory=dict)  # per hint: live, state, key id, status
    rotation: dict[str, str] | None = None  # the journal when a rotation is not finished
    last_rotation: dict[str, str] | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def needs_rotation(self) -> bool:
        return self.due is not None and self.due.state in ("warn", "overdue", "unknown")

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.name, "targets": [t.to_dict() for t in self.targets], "targets_agree": self.agree,
            "due": self.due.to_dict() if self.due else None, "api": self.api,
            "rotation_in_progress": _journal_view(self.rotation) if self.rotation else None,
            "last_rotation": _journal_view(self.last_rotation) if self.last_rotation else None,
            "errors": self.errors,
        }


_JOURNAL_FIELDS = ("rotation", "phase", "step", "note", "owner", "owner_started", "updated_at", "old_hint",
                   "new_hint", "old_id", "new_id", "waiting_until", "revoke_after", "archive_after",
                   "finished_at", "started")


def _journal_view(state: dict[str, str]) -> dict[str, str]:
    return {k: state[k] for k in _JOURNAL_FIELDS if k in state}


def env_status(policy: Policy, env: Environment, *, use_api: bool = True, now: datetime | None = None) -> EnvStatus:
    from keyvault.backends import open_backend

    now = now or utcnow()
    out = EnvStatus(env.name)
    secrets = []
    for target in env.targets:
        ts = TargetStatus(target.source)
        try:
            backend = open_backend(target.source)
            v = backend.read()
            ts.hint, ts.fingerprint, ts.version, ts.created = v.secret.hint, v.secret.fingerprint, str(v.version), v.created
            if v.created:
                ts.age_days = (now - v.created).total_seconds() / 86400
            pending = backend.read_pending()
            ts.pending_hint = pending.secret.hint if pending else None
            secrets.append(v.secret)
            if target is env.primary:
                state, _ = backend.read_state()
                if state is not None:
                    if state.get("phase") in TERMINAL:
                        out.last_rotation = state
                    else:
                        out.rotation = state
        except KeyvaultError as exc:
            ts.error = str(exc)
            out.errors.append(str(exc))
        out.targets.append(ts)
    fps = {t.fingerprint for t in out.targets if t.fingerprint}
    out.agree = len(fps) == 1 and not out.errors
    created = next((t.created for t in out.targets if t.fingerprint and t.created), None)
    if created is None and out.targets and out.targets[0].fingerprint:
        from keyvault.rotate.due import deployed_at

        created = deployed_at(out.rotation or out.last_rotation, out.targets[0].fingerprint)
    expires = None
    if use_api and secrets:
        from keyvault.rotate.apikeys import KeyService

        try:
            keys = KeyService.for_env(policy, env)
        except KeyvaultError as exc:
            out.errors.append(f"admin key: {exc}")
            keys = KeyService.for_env(policy, env, use_admin=False)
        seen: set[str] = set()
        for secret in secrets:
            if secret.fingerprint in seen:
                continue
            seen.add(secret.fingerprint)
            entry: dict[str, Any] = {}
            try:
                from keyvault.anthropic_api import verify_key

                status = verify_key(secret, base_url=keys.base_url, timeout=5, retries=0)
                entry.update(state=status.state, live=status.live)
            except KeyvaultError as exc:
                entry.update(state="unknown", live=None, error=str(exc))
            if keys.admin is not None:
                try:
                    info = keys.find(secret, None)
                    if info is not None:
                        entry.update(id=info.id, name=info.name, status=info.status,
                                     expires_at=iso(info.expires_at) if info.expires_at else None)
                        if secret.fingerprint == out.targets[0].fingerprint:
                            created = info.created_at or created
                            expires = info.expires_at
                except KeyvaultError as exc:
                    entry["admin_error"] = str(exc)
            out.api[secret.hint] = entry
        keys.close()
    if out.targets and out.targets[0].fingerprint:
        out.due = due(policy, created, expires, now)
    return out


def render_text(status: EnvStatus) -> list[str]:
    lines = [f"{status.name}:"]
    for t in status.targets:
        if t.error:
            lines.append(f"  {t.source}: error: {t.error}")
            continue
        age = f", {t.age_days:.0f} days old" if t.age_days is not None else ""
        api = status.api.get(t.hint or "", {})
        live = ""
        if api:
            live = f", API: {api.get('state')}"
            if api.get("status"):
                live += f" ({api.get('id')} {api.get('status')})"
        pending = f", pending {t.pending_hint}" if t.pending_hint else ""
        lines.append(f"  {t.source}: {t.hint} sha256 {(t.fingerprint or '')[:12]} version {t.version}{age}{live}{pending}")
    lines.append("  targets agree: " + ("yes" if status.agree else "NO"))
    if status.due is not None:
        d = status.due
        if d.state == "unknown":
            lines.append("  due: unknown (the key's creation time is not recorded; configure an Admin key)")
        else:
            lines.append(f"  due: {iso(d.due_at) if d.due_at else '?'} ({d.days_left:.0f} days, {d.reason}): {d.state}")
    if status.rotation:
        r = status.rotation
        who = f" by {r['owner']}" if r.get("owner") else ""
        wait = f", until {r['waiting_until']}" if r.get("waiting_until") else ""
        lines.append(
            f"  rotation in progress{who}: {r.get('rotation')} at step {r.get('step')} "
            f"({r.get('note') or r.get('phase')}{wait}), {r.get('old_hint')} -> {r.get('new_hint')}"
        )
    elif status.last_rotation:
        r = status.last_rotation
        lines.append(f"  last rotation: {r.get('rotation')} {r.get('phase')} ({r.get('note') or r.get('step')}) at {r.get('updated_at')}")
    return lines
