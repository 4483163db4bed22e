"""When a key is due for rotation: its age against the policy, brought forward by expires_at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from keyvault.policy import Policy


@dataclass(frozen=True)
class Due:
    created: datetime | None
    due_at: datetime | None  # created + max_age, or expires_at when sooner
    age_days: float | None
    days_left: float | None
    state: str  # ok | warn (inside the warning window) | overdue | unknown (no creation time)
    reason: str  # "max age 90 days" | "expires_at"

    def to_dict(self) -> dict[str, object]:
        from keyvault.rotate.journal import iso

        return {
            "created": iso(self.created) if self.created else None,
            "due_at": iso(self.due_at) if self.due_at else None,
            "age_days": round(self.age_days, 1) if self.age_days is not None else None,
            "days_until_due": round(self.days_left, 1) if self.days_left is not None else None,
            "state": self.state,
            "reason": self.reason,
        }


def deployed_at(journal: dict[str, str] | None, fingerprint: str) -> datetime | None:
    """When keyvault put this key in place, from the journal: a creation time for stores that
    keep none (.env files)."""
    if not journal or journal.get("new_fp") != fingerprint:
        return None
    from keyvault.rotate.journal import parse_iso

    return parse_iso(journal.get("deployed_at") or journal.get("stashed_at"))


def due(policy: Policy, created: datetime | None, expires_at: datetime | None, now: datetime) -> Due:
    candidates: list[tuple[datetime, str]] = []
    if created is not None:
        candidates.append((created + timedelta(days=policy.max_age_days), f"max age {policy.max_age_days} days"))
    if expires_at is not None:
        candidates.append((expires_at, "expires_at"))
    if not candidates:
        return Due(None, None, None, None, "unknown", "creation time unknown")
    due_at, reason = min(candidates, key=lambda c: c[0])
    age = (now - created).total_seconds() / 86400 if created else None
    left = (due_at - now).total_seconds() / 86400
    if left <= 0:
        state = "overdue"
    elif left <= policy.warn_days:
        state = "warn"
    else:
        state = "ok"
    return Due(created, due_at, age, left, state, reason)
