"""Leak response (`keyvault incident`): a leaked key is deactivated at once, every environment
that served it is rotated to a new key, and the window whose usage must be reviewed is printed.

Order matters: deactivation comes first, because every minute a leaked key stays live is
exposure; the apps that served it fail until their rotation finishes, which is why the new key
can be handed in on the same command (--new-key-fd / --new-key-command / the pending slot).

The leaked key arrives as its value (stdin) or as a `keyvault scan --format json` finding,
which carries its fingerprint and hint, never the value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from keyvault.errors import KeyvaultError
from keyvault.keys import Secret
from keyvault.policy import Policy
from keyvault.rotate.apikeys import KeyService
from keyvault.rotate.journal import TERMINAL, iso, utcnow

_DATE_FIELDS = ("commit_date", "author_date", "date", "committed_at", "first_seen", "introduced_at")
_FP_RE = "0123456789abcdef"


@dataclass
class Leak:
    fingerprint: str
    hint: str | None
    secret: Secret | None = None
    since: datetime | None = None  # when it was exposed (the finding's commit date), if known
    where: str | None = None  # file:line or commit, for the report


def leak_from_secret(secret: Secret) -> Leak:
    return Leak(secret.fingerprint, secret.hint, secret)


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    from datetime import timezone

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _commit_date(commit: Any, repo: Path | None) -> datetime | None:
    import re
    import subprocess

    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        return None
    try:
        proc = subprocess.run(["git", "show", "-s", "--format=%cI", commit], cwd=repo, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _parse_date(proc.stdout.strip()) if proc.returncode == 0 else None


def leak_from_finding(path: Path, select: str | None = None, repo: Path | None = None) -> Leak:
    """One finding of a scan's JSON report: a finding object, a list, or {"findings": [...]}.

    `select` picks one when the report holds several: an index (0-based) or a fingerprint prefix.
    Without a date in the finding, the date of the commit it names (looked up in `repo`, by
    default the working directory) starts the usage window.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyvaultError(f"{path}: finding file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyvaultError(f"{path}: cannot read the finding file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise KeyvaultError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}): expected `keyvault scan --format json` output") from None
    findings = data.get("findings", [data]) if isinstance(data, dict) else data
    if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
        raise KeyvaultError(f"{path}: expected a finding object, a list of findings, or {{\"findings\": [...]}}")
    findings = [f for f in findings if isinstance(f.get("fingerprint"), str)]
    if not findings:
        raise KeyvaultError(f"{path}: no finding with a 'fingerprint' (sha256 of the key): expected `keyvault scan --format json` output")
    distinct = {f["fingerprint"]: f for f in findings}
    if select is not None:
        if select.isdigit():
            index = int(select)
            if index >= len(findings):
                raise KeyvaultError(f"{path}: --select {select}: the report has {len(findings)} findings (0-{len(findings) - 1})")
            chosen = findings[index]
        else:
            hits = [f for fp, f in distinct.items() if fp.startswith(select.lower())]
            if len(hits) != 1:
                raise KeyvaultError(f"{path}: --select {select}: matches {len(hits)} of the report's keys; give more of the fingerprint")
            chosen = hits[0]
    elif len(distinct) > 1:
        listed = "; ".join(f"{fp[:12]} ({f.get('hint', '?')})" for fp, f in distinct.items())
        raise KeyvaultError(f"{path}: the report names {len(distinct)} different keys ({listed}); choose one with --select FINGERPRINT-PREFIX")
    else:
        chosen = findings[0]
    fp = chosen["fingerprint"].lower()
    if len(fp) != 64 or any(c not in _FP_RE for c in fp):
        raise KeyvaultError(f"{path}: 'fingerprint' {fp[:16]!r}... is not a sha256 hex digest")
    same = [f for f in findings if f.get("fingerprint", "").lower() == fp]
    dates = [d for d in (_parse_date(f.get(k)) for f in same for k in _DATE_FIELDS) if d]
    if not dates:
        # A history finding names its commit: the key was exposed from that commit's date on.
        dates = [d for d in (_commit_date(f.get("commit"), repo) for f in same) if d]
    file = chosen.get("file") or chosen.get("path")
    where = f"{file}:{chosen.get('line')}" if file else chosen.get("commit")
    return Leak(fp, chosen.get("hint"), None, min(dates) if dates else None, where)


@dataclass
class IncidentResult:
    leak: Leak
    key_id: str | None = None
    key_name: str | None = None
    deactivated: bool = False
    deactivated_at: datetime | None = None
    refused: bool | None = None
    holders: dict[str, list[str]] = field(default_factory=dict)  # env -> target URIs
    rotations: dict[str, dict[str, Any]] = field(default_factory=dict)  # env -> result / error
    window: tuple[datetime | None, datetime | None] = (None, None)
    notes: list[str] = field(default_factory=list)
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        start, end = self.window
        return {
            "hint": self.leak.hint, "fingerprint": self.leak.fingerprint[:12], "where": self.leak.where,
            "key_id": self.key_id, "key_name": self.key_name, "deactivated": self.deactivated,
            "deactivated_at": iso(self.deactivated_at) if self.deactivated_at else None,
            "refused_by_api": self.refused, "held_by": self.holders, "rotations": self.rotations,
            "review_usage": {"from": iso(start) if start else None, "to": iso(end) if end else None},
            "notes": self.notes, "exit_code": self.exit_code,
        }


def find_holders(policy: Policy, fingerprint: str, envs: list[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    from keyvault.backends import open_backend

    holders: dict[str, list[str]] = {}
    problems = []
    for name, env in policy.environments.items():
        if envs and name not in envs:
            continue
        for target in env.targets:
            try:
                secret = open_backend(target.source).read().secret
            except KeyvaultError as exc:
                problems.append(f"{target.source}: cannot read ({exc})")
                continue
            if secret.fingerprint == fingerprint:
                holders.setdefault(name, []).append(target.source)
    return holders, problems


def respond(policy: Policy, leak: Leak, *, envs: list[str] | None = None, options_factory: Any = None,
            say: Any = None) -> IncidentResult:
    """Deactivate, rotate every environment that served the key, report the usage window.

    `options_factory(env_name)` returns the engine Options for that environment's rotation
    (the CLI fills in how the new key is obtained and how progress is shown).
    """
    from keyvault.rotate.engine import Options, rotate

    result = IncidentResult(leak)
    holders, problems = find_holders(policy, leak.fingerprint, envs)
    result.holders = holders
    result.notes.extend(problems)
    first_env = next(iter(holders), None) or (envs[0] if envs else next(iter(policy.environments)))
    keys = KeyService.for_env(policy, policy.environment(first_env))
    try:
        # 1. deactivate at once
        info = None
        if keys.admin is not None:
            if leak.secret is not None:
                info = keys.find(leak.secret, None)
            elif leak.hint:
                info = keys.find_by_hint(leak.hint, None)
            if info is None:
                result.notes.append(f"the Admin API lists no key with the hint {leak.hint}: another organization's key, or already deleted")
            else:
                result.key_id, result.key_name = info.id, info.name
                if info.status == "active":
                    info = keys.set_status(info.id, "inactive")
                    result.deactivated_at = utcnow()
                    result.deactivated = True
                else:
                    result.deactivated = info.status in ("inactive", "archived", "expired")
                    result.notes.append(f"{info.id} was already {info.status}")
                    result.deactivated_at = utcnow()
        else:
            from keyvault.rotate import console

            result.notes.append(f"no Admin key ({keys.admin_note}): deactivate the key in the Console NOW")
            if say:
                say(console.revoke_steps(leak.hint or "?", None, None))
        if leak.secret is not None and result.deactivated:
            from keyvault.rotate.revoke import confirm_refused

            result.refused = confirm_refused(keys, leak.secret)
        # 2. rotate every environment that served it
        for env_name in holders:
            from keyvault.backends import open_backend

            env = policy.environment(env_name)
            state, _ = open_backend(env.primary.source).read_state()
            if state is not None and state.get("phase") not in TERMINAL:
                result.rotations[env_name] = {
                    "error": f"rotation {state.get('rotation')} is in progress at step {state.get('step')}: "
                             f"finish it (keyvault rotate --env {env_name}) and run the incident again",
                    "exit_code": 2,
                }
                continue
            options = options_factory(env_name) if options_factory else Options(env=env_name)
            options.env, options.incident, options.expect_old = env_name, True, leak.fingerprint
            try:
                outcome = rotate(policy, options)
                result.rotations[env_name] = {"phase": outcome.phase, "summary": outcome.summary, "exit_code": outcome.exit_code,
                                              "new_hint": outcome.new_hint}
            except KeyvaultError as exc:
                result.rotations[env_name] = {"error": str(exc), "exit_code": exc.exit_code}
        # 3. the window to review
        start = leak.since or (info.created_at if info is not None else None)
        result.window = (start, result.deactivated_at)
    finally:
        keys.close()
    codes = [r.get("exit_code", 0) for r in result.rotations.values()]
    if not result.deactivated:
        result.exit_code = 1
    if any(codes):
        result.exit_code = max(codes)
    return result
