"""One unattended run of the rotation engine, and what to tell people about it.

Every scheduler (Lambda, Cloud Run function, CronJob, Actions, systemd) ends up here: load the
policy, run `keyvault.rotate.rotate` without a terminal, log each step to stderr, and turn the
outcome into notifications (`keyvault.notify`): "due" when the key is inside the warning
window or past it with nothing staged, "rotated" when this run deployed a new key, "revoked"
when it deactivated the old one, "failed" when it rolled back, aborted or raised.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from keyvault.errors import KeyvaultError
from keyvault.notify import Delivery, Notifier, NotifyConfigError

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.policy import Policy
    from keyvault.rotate.engine import Result

# engine steps whose events mean "this run changed which key the targets serve"
_DEPLOY_STEPS = ("update", "verify-deploy")


@dataclass
class Outcome:
    """What a scheduled run did, for the handler's return value and the logs."""

    env: str
    phase: str
    summary: str
    exit_code: int
    events: list[str] = field(default_factory=list)  # notification events sent
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "phase": self.phase, "summary": self.summary,
                "exit_code": self.exit_code, "notified": self.events}


def load(policy: Policy | str | None) -> Policy:
    from keyvault.policy import Policy, load_policy

    return policy if isinstance(policy, Policy) else load_policy(policy)


def notifier_for(policy: Policy | None = None, stream: Any = None) -> Notifier:
    """The webhook settings: KEYVAULT_WEBHOOK_URL, else the policy's `webhook_url`; a bad URL
    degrades to stderr-only, never fails."""
    try:
        return Notifier.from_env(webhook_url=policy.webhook_url if policy is not None else None, stream=stream)
    except NotifyConfigError as exc:
        fallback = Notifier(stream=stream)
        fallback._print(f"keyvault: warning: {exc}; notifications go to stderr only")
        return fallback


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def events_for(result: Result) -> list[str]:
    """Which notifications a finished engine run deserves (possibly several, in order)."""
    steps = {e.step for e in result.events}
    messages = [e.message for e in result.events if e.step == "revoke"]
    out: list[str] = []
    if result.phase in ("rolled-back", "aborted"):
        return ["failed"]
    if result.phase == "due":
        return ["due"]
    if steps & set(_DEPLOY_STEPS) and any(e.step == "verify-deploy" for e in result.events):
        out.append("rotated")
    if any("set inactive" in m or "confirmed" in m or "refused" in m for m in messages):
        out.append("revoked")
    return out


def notify_result(result: Result, notifier: Notifier, target: str = "") -> list[Delivery]:
    sent = []
    for event in events_for(result):
        hint = result.old_hint if event in ("revoked", "due") else (result.new_hint or result.old_hint)
        detail = result.summary if event in ("failed", "due") else ""
        sent.append(notifier.notify(
            event, env=result.env, target=target, key_hint=hint or "", detail=detail,
            rotation=result.rotation, waiting_until=result.waiting_until,
        ))
    return sent


def run_scheduled(
    policy: Policy | str | None = None,
    env: str | None = None,
    *,
    notifier: Notifier | None = None,
    log: Callable[[str], None] = _log,
) -> Outcome:
    """Run the engine once for `env`, non-interactively; notify; never prompt.

    KeyvaultErrors are notified as "failed" and re-raised (the scheduler should see the
    failure and, for Lambda and Pub/Sub, retry); the rotation is left parked by the engine,
    so the next run continues where this one stopped.
    """
    from keyvault.rotate.engine import Options, rotate
    from keyvault.rotate.newkey import KeyInput

    loaded = load(policy)
    environment = loaded.environment(env)
    target = environment.primary.source
    notifier = notifier or notifier_for(loaded)

    def report(event: Any) -> None:
        log(f"keyvault: [{event.step}] " + " ".join(p for p in (event.target, event.hint, event.message) if p))

    def say(text: str) -> None:
        for line in text.splitlines():
            log(f"keyvault: {line}")

    options = Options(env=environment.name, interactive=False, key_input=KeyInput(stdin=False),
                      report=report, say=say, wait=False)
    try:
        result = rotate(loaded, options)
    except KeyvaultError as exc:
        notifier.notify("failed", env=environment.name, target=target, detail=str(exc))
        raise
    log(f"keyvault: {result.phase}: {result.summary}")
    sent = notify_result(result, notifier, target)
    return Outcome(environment.name, result.phase, result.summary, result.exit_code,
                   [d.event.event for d in sent], result.to_dict())


def notify_run(policy: Policy, env: str | None, *, result: Result | None = None,
               error: BaseException | None = None) -> list[str]:
    """For `keyvault rotate --non-interactive` and other callers of the engine: send the
    notifications one run deserves (from its Result, or "failed" for its error). Never raises:
    a notification must not change the outcome or the exit code of the rotation."""
    try:
        environment = policy.environment(env)
        notifier = notifier_for(policy)
        if error is not None:
            delivery = notifier.notify("failed", env=environment.name, target=environment.primary.source,
                                       detail=str(error) if isinstance(error, KeyvaultError) else type(error).__name__)
            return [delivery.event.event]
        if result is not None:
            return [d.event.event for d in notify_result(result, notifier, environment.primary.source)]
    except Exception:  # noqa: BLE001 - best effort by contract
        return []
    return []
