"""AWS Secrets Manager rotation function for an Anthropic API key.

Secrets Manager rotates a secret by invoking a Lambda four times with the same
`ClientRequestToken` (the id of the new version):

- `createSecret`: put the new key in version <token> labelled AWSPENDING;
- `setSecret`: make the service accept it (nothing to do: the key already exists in the Console);
- `testSecret`: prove the AWSPENDING key works (GET /v1/models, free);
- `finishSecret`: move AWSCURRENT to <token> (`RemoveFromVersionId` = the version that held it,
  so the move is a compare-and-swap); AWS labels the old version AWSPREVIOUS itself.

Anthropic keys are minted only in the Console, so createSecret cannot make one: it takes the
key an operator deposited with `keyvault stage`. AWS refuses to *start* a rotation while
AWSPENDING sits on a version other than AWSCURRENT (its documented rule), and `keyvault stage`
deposits under AWSPENDING, so the daily maintenance invocation (`{"keyvault": "maintain"}`,
an EventBridge schedule) moves a fresh deposit to the private label KEYVAULT_DEPOSIT and calls
RotateSecret; Secrets Manager then drives the four steps, with its own retries. Without a
deposit createSecret removes AWSPENDING from the empty version AWS made (the secret is exactly
as before), sends a "waiting" notification with the steps, and fails.

Every step is idempotent and checked against the rotation journal that `keyvault rotate` also
uses (kept beside the secret, fingerprints only): steps out of order are refused with the
reason, repeated steps (AWS retries) change nothing twice, and after finishSecret the journal
is parked at the grace step, so the maintenance run that comes after the policy's grace period
revokes the old key through the same engine as every other scheduler.

Configuration (Lambda environment): KEYVAULT_POLICY (default rotation.toml in the task root),
KEYVAULT_ENV (the policy environment; optional when there is one), ANTHROPIC_BASE_URL (tests),
KEYVAULT_WEBHOOK_URL / KEYVAULT_WEBHOOK_SECRET (notifications).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from keyvault.errors import ApiError, KeyvaultError
from keyvault.keys import API, Secret, parse_key
from keyvault.notify import Notifier

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.backends import Backend, Source
    from keyvault.policy import Environment, Policy
    from keyvault.rotate.journal import Journal

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
DEPOSIT_LABEL = "KEYVAULT_DEPOSIT"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
MAINTAIN = "maintain"
# journal steps after a successful testSecret: finishSecret may run
_TESTED = ("update", "verify-deploy")
_FINISHED = ("grace", "revoke", "archive", "done")


class RotationStepError(KeyvaultError):
    """A rotation event that cannot be carried out as asked (wrong token, order, config)."""


class NoDepositError(KeyvaultError):
    """createSecret found no key deposited with `keyvault stage`: the secret is unchanged."""


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- configuration ---------------------------------------------------------------------------


@dataclass
class Context:
    """The policy environment this function rotates, and its one AWS secret."""

    policy: Policy
    env: Environment
    source: Source
    backend: Backend
    notifier: Notifier
    log: Callable[[str], None] = _log

    @property
    def client(self) -> Any:
        return self.backend.client  # type: ignore[attr-defined]

    @property
    def target(self) -> str:
        return self.source.uri


def load_context(
    policy: Policy | str | None = None,
    env: str | None = None,
    *,
    notifier: Notifier | None = None,
    log: Callable[[str], None] = _log,
) -> Context:
    from keyvault.backends import open_backend, parse_source
    from keyvault.integrations.scheduled import notifier_for
    from keyvault.policy import Policy, load_policy

    if not isinstance(policy, Policy):
        path = policy or os.environ.get("KEYVAULT_POLICY")
        if path is None:
            root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
            path = os.path.join(root, "rotation.toml")
        policy = load_policy(path)
    environment = policy.environment(env or os.environ.get("KEYVAULT_ENV") or None)
    aws = [t for t in environment.targets if t.source.split("://", 1)[0].lower() == "aws-sm"]
    if not aws:
        raise RotationStepError(
            f"policy environment {environment.name!r} has no aws-sm:// target; this function rotates "
            "a key held in AWS Secrets Manager"
        )
    source = parse_source(aws[0].source)
    return Context(policy, environment, source, open_backend(source), notifier or notifier_for(policy), log)


# -- Secrets Manager calls -------------------------------------------------------------------


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))


def _call(ctx: Context, operation: str, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(ctx.client, operation)(**kwargs)
    except ClientError as exc:
        raise KeyvaultError(f"{ctx.target}: {operation} failed ({_code(exc)})") from None
    except BotoCoreError as exc:
        raise KeyvaultError(f"{ctx.target}: {operation} failed ({type(exc).__name__})") from None


def _get_string(ctx: Context, arn: str, **selector: str) -> str | None:
    """The secret string of one version, None when that version has no value."""
    from botocore.exceptions import ClientError

    try:
        response = ctx.client.get_secret_value(SecretId=arn, **selector)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise KeyvaultError(f"{ctx.target}: GetSecretValue failed ({_code(exc)})") from None
    return response.get("SecretString")


def _key_in(ctx: Context, text: str | None, where: str) -> Secret:
    """The API key inside a version's secret string (`#field` of a JSON secret, or the string)."""
    from keyvault.backends import _fields

    if text is None:
        raise RotationStepError(f"{ctx.target}: {where} has no value")
    try:
        raw = _fields.extract(text, ctx.source.field, f"{ctx.target} ({where})")
        return parse_key(raw, expect="api")
    except KeyvaultError as exc:
        raise RotationStepError(f"{ctx.target}: {where}: {exc}") from None


def _stages(ctx: Context, arn: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    meta = _call(ctx, "describe_secret", SecretId=arn)
    return meta, {vid: list(labels) for vid, labels in (meta.get("VersionIdsToStages") or {}).items()}


def _holder(stages: Mapping[str, list[str]], label: str) -> str | None:
    return next((vid for vid, labels in stages.items() if label in labels), None)


def _remove_label(ctx: Context, arn: str, label: str, version: str) -> None:
    _call(ctx, "update_secret_version_stage", SecretId=arn, VersionStage=label, RemoveFromVersionId=version)


def _same_secret(ctx: Context, arn: str) -> None:
    """The event's secret must be the policy's: a function shared by mistake must not rotate
    a secret it was not configured for."""
    meta = _call(ctx, "describe_secret", SecretId=ctx.backend.name)  # type: ignore[attr-defined]
    if arn not in (meta.get("ARN"), meta.get("Name")):
        raise RotationStepError(
            f"this function rotates {ctx.target} ({meta.get('ARN')}), not {arn}; give each secret "
            "its own rotation function or policy environment (KEYVAULT_ENV)"
        )
    if len(ctx.env.targets) != 1:
        raise RotationStepError(
            f"policy environment {ctx.env.name!r} has {len(ctx.env.targets)} targets; Secrets Manager "
            "rotation can only update this secret. Rotate multi-target environments with the "
            "maintenance run or `keyvault rotate` instead, and turn native rotation off"
        )


# -- journal ---------------------------------------------------------------------------------


def _journal(ctx: Context) -> Journal:
    from keyvault.rotate.journal import Journal

    return Journal(ctx.backend)


def _fresh(ctx: Context, token: str) -> Callable[[], dict[str, str]]:
    from keyvault.rotate.journal import FORMAT, RUNNING, iso, new_rotation_id, utcnow

    def fresh() -> dict[str, str]:
        now = utcnow()
        return {"v": FORMAT, "rotation": new_rotation_id(now), "env": ctx.env.name, "phase": RUNNING,
                "step": "plan", "started": iso(now), "targets": "1", "aws_token": token}

    return fresh


def _claim(ctx: Context, token: str, *, create: bool = False) -> tuple[Journal, dict[str, str]]:
    """Own the journal for this token's rotation; refuse another rotation's journal."""
    from keyvault.rotate.journal import TERMINAL

    journal = _journal(ctx)
    state = journal.load()
    active = state is not None and state.get("phase") not in TERMINAL
    if active and state.get("aws_token") != token:  # type: ignore[union-attr]
        raise RotationStepError(
            f"{ctx.target}: rotation {state.get('rotation')} is not finished (step {state.get('step')}, "  # type: ignore[union-attr]
            f"{state.get('note') or state.get('phase')}); it must end before version {token} can be "  # type: ignore[union-attr]
            "rotated in (the maintenance run continues it)"
        )
    if not active and not create:
        raise RotationStepError(
            f"{ctx.target}: no rotation journal for version {token}: createSecret has not run for it"
        )
    claimed, _ = journal.claim(_fresh(ctx, token))
    return journal, claimed


def _park(journal: Journal, note: str, **fields: str | None) -> None:
    from keyvault.rotate.journal import PARKED

    journal.release(PARKED, note=note, **fields)


# -- the four steps --------------------------------------------------------------------------


def _check_token(ctx: Context, arn: str, token: str) -> str:
    """AWS's preconditions for a step; 'current' when the token is already AWSCURRENT."""
    meta, stages = _stages(ctx, arn)
    if not meta.get("RotationEnabled"):
        raise RotationStepError(f"{ctx.target}: rotation is not enabled for this secret")
    if token not in stages:
        raise RotationStepError(f"{ctx.target}: version {token} has no staging label; it is not a rotation in progress")
    if CURRENT in stages[token]:
        return "current"
    if PENDING not in stages[token]:
        raise RotationStepError(
            f"{ctx.target}: version {token} is not AWSPENDING (a rotation that was stopped: see the "
            "earlier log or notification)"
        )
    return "pending"


def create_secret(ctx: Context, arn: str, token: str) -> str:
    from keyvault.rotate.apikeys import KeyService
    from keyvault.rotate.journal import iso, utcnow

    if _check_token(ctx, arn, token) == "current":
        return "already current"
    existing = _get_string(ctx, arn, VersionId=token, VersionStage=PENDING)
    if existing is not None:
        new = _key_in(ctx, existing, f"version {token}")
        journal = _journal(ctx)
        state = journal.load() or {}
        if state.get("aws_token") == token and state.get("new_fp") == new.fingerprint:
            _, stages = _stages(ctx, arn)
            leftover = _holder(stages, DEPOSIT_LABEL)
            if leftover and leftover != token:
                _remove_label(ctx, arn, DEPOSIT_LABEL, leftover)  # a crash left the deposit labelled
            return "already created"  # a retry: nothing to do twice
    _, stages = _stages(ctx, arn)
    deposit_version = _holder(stages, DEPOSIT_LABEL)
    deposit_text = _get_string(ctx, arn, VersionId=deposit_version) if deposit_version else None
    if existing is None and deposit_text is None:
        _remove_label(ctx, arn, PENDING, token)
        name = ctx.policy.key_name(ctx.env)
        policy = f" --policy {ctx.policy.path}" if ctx.policy.path else ""
        steps = (f"create a key named {name} in the Claude Console, then `keyvault stage{policy} "
                 f"--env {ctx.env.name}`; the next maintenance run rotates it in")
        ctx.notifier.notify("waiting", env=ctx.env.name, target=ctx.target, detail=steps)
        raise NoDepositError(
            f"{ctx.target}: no new key has been deposited, so there is nothing to rotate in; AWSPENDING "
            f"was removed from the empty version {token} and the secret is unchanged. To finish: {steps}"
        )
    text = existing if existing is not None else deposit_text
    new = _key_in(ctx, text, f"the deposited key (version {deposit_version})" if existing is None else f"version {token}")
    current_text = _get_string(ctx, arn, VersionStage=CURRENT)
    old = _key_in(ctx, current_text, "the AWSCURRENT version")
    if new.fingerprint == old.fingerprint:
        if deposit_version:
            _remove_label(ctx, arn, DEPOSIT_LABEL, deposit_version)
        _remove_label(ctx, arn, PENDING, token)
        raise RotationStepError(f"{ctx.target}: the deposited key {new.hint} is the current key; deposit a new one")
    journal, state = _claim(ctx, token, create=True)
    try:
        keys = KeyService.for_env(ctx.policy, ctx.env)
        try:
            info = keys.find(old, ctx.env.workspace_id) if keys.admin else None
        finally:
            keys.close()
        if existing is None:
            # the same token and the same value: a retried put is a no-op on AWS
            _call(ctx, "put_secret_value", SecretId=arn, ClientRequestToken=token, SecretString=text,
                  VersionStages=[PENDING])
        journal.save(
            step="verify-new", old_fp=old.fingerprint, old_hint=old.hint,
            old_version=_holder(_stages(ctx, arn)[1], CURRENT), old_id=info.id if info else None,
            old_ws=info.workspace_id if info else None, new_fp=new.fingerprint, new_hint=new.hint,
            stashed_at=iso(utcnow()),
        )
        if deposit_version and deposit_version != token:
            _remove_label(ctx, arn, DEPOSIT_LABEL, deposit_version)
    finally:
        _park(journal, "aws-rotation")
    ctx.log(f"keyvault: [createSecret] {ctx.target} {new.hint} is AWSPENDING as version {token}")
    return "created"


def set_secret(ctx: Context, arn: str, token: str) -> str:
    if _check_token(ctx, arn, token) == "current":
        return "already current"
    new = _key_in(ctx, _get_string(ctx, arn, VersionId=token, VersionStage=PENDING), f"version {token}")
    if new.family is not API:  # parse_key(expect="api") already guarantees it; kept for clarity
        raise RotationStepError(f"{ctx.target}: version {token} holds {new.family.label}")
    # Nothing to push: the key was created in the Claude Console, which is the "service".
    ctx.log(f"keyvault: [setSecret] {ctx.target} {new.hint}: nothing to set (keys are created in the Console)")
    return "nothing to set"


def test_secret(ctx: Context, arn: str, token: str) -> str:
    from keyvault.rotate.apikeys import KeyService
    from keyvault.rotate.journal import ABORTED

    if _check_token(ctx, arn, token) == "current":
        return "already current"
    new = _key_in(ctx, _get_string(ctx, arn, VersionId=token, VersionStage=PENDING), f"version {token}")
    journal, state = _claim(ctx, token)
    try:
        if state.get("new_fp") != new.fingerprint:
            raise RotationStepError(f"{ctx.target}: version {token} holds {new.hint}, not the key createSecret recorded")
        keys = KeyService.for_env(ctx.policy, ctx.env)
        try:
            status = keys.verify(new, "new key")  # undetermined answers raise ApiError: AWS retries
            if status.live is not True:
                _remove_label(ctx, arn, PENDING, token)
                journal.release(ABORTED, note="new-key-refused")
                journal = None  # type: ignore[assignment]
                detail = f"the deposited key {new.hint} is refused by the API ({status.summary()}); stage another"
                ctx.notifier.notify("failed", env=ctx.env.name, target=ctx.target, key_hint=new.hint, detail=detail)
                raise RotationStepError(f"{ctx.target}: {detail}; AWSPENDING was removed, the secret is unchanged")
            info = keys.find(new, ctx.env.workspace_id) if keys.admin else None
        finally:
            keys.close()
        if state.get("step") not in _TESTED + _FINISHED:
            journal.save(step="update", new_id=info.id if info else None)
    finally:
        if journal is not None:
            _park(journal, "aws-rotation")
    ctx.log(f"keyvault: [testSecret] {ctx.target} {new.hint} works ({status.summary()})")
    return "tested"


def finish_secret(ctx: Context, arn: str, token: str) -> str:
    from datetime import timedelta

    from keyvault.rotate.journal import iso, utcnow

    from keyvault.rotate.journal import TERMINAL

    where = _check_token(ctx, arn, token)
    if where == "current":
        done = _journal(ctx).load()
        if done is None or done.get("phase") in TERMINAL or done.get("aws_token") != token:
            return "already current"  # a late retry after the rotation (or a later one) ended
    journal, state = _claim(ctx, token)
    moved = False
    try:
        step = state.get("step")
        if where != "current":
            if step not in _TESTED:
                raise RotationStepError(
                    f"{ctx.target}: version {token} has not passed testSecret (journal step {step}); "
                    "AWSCURRENT stays where it is"
                )
            _, stages = _stages(ctx, arn)
            holder = _holder(stages, CURRENT)
            # the compare-and-swap: AWS refuses if AWSCURRENT has left `holder` meanwhile
            _call(ctx, "update_secret_version_stage", SecretId=arn, VersionStage=CURRENT,
                  MoveToVersionId=token, RemoveFromVersionId=holder)
            moved = True
        _, stages = _stages(ctx, arn)
        if PENDING in stages.get(token, []):
            # a rotation that finished must not leave AWSPENDING behind: the next RotateSecret
            # would take it for a rotation in progress
            _remove_label(ctx, arn, PENDING, token)
        if step not in _FINISHED:
            now = utcnow()
            journal.save(step="grace", deployed_at=iso(now), new_version=token,
                          revoke_after=iso(now + ctx.policy.grace))
            state = journal.state or state
    finally:
        _park(journal, "awaiting-revoke", waiting_until=(journal.state or {}).get("revoke_after"))
    if moved:
        ctx.notifier.notify("rotated", env=ctx.env.name, target=ctx.target, key_hint=state.get("new_hint", ""),
                            detail=f"old key {state.get('old_hint')} stays active until {state.get('revoke_after')}",
                            rotation=state.get("rotation"))
    ctx.log(f"keyvault: [finishSecret] {ctx.target} AWSCURRENT is version {token}")
    return "finished" if moved else "already current"


_HANDLERS = {
    "createSecret": create_secret,
    "setSecret": set_secret,
    "testSecret": test_secret,
    "finishSecret": finish_secret,
}


def rotation_step(event: Mapping[str, Any], ctx: Context) -> dict[str, str]:
    step = event.get("Step")
    arn = event.get("SecretId")
    token = event.get("ClientRequestToken")
    if step not in _HANDLERS:
        raise RotationStepError(f"unknown rotation step {step!r}; expected one of {', '.join(STEPS)}")
    if not isinstance(arn, str) or not arn or not isinstance(token, str) or not token:
        raise RotationStepError("a rotation event needs SecretId and ClientRequestToken")
    _same_secret(ctx, arn)
    outcome = _HANDLERS[step](ctx, arn, token)
    return {"step": step, "token": token, "outcome": outcome}


# -- maintenance -----------------------------------------------------------------------------


def start_rotation_from_deposit(ctx: Context) -> str | None:
    """A key staged with `keyvault stage` (AWSPENDING on a version of its own) becomes a
    Secrets Manager rotation: move the deposit to KEYVAULT_DEPOSIT, then RotateSecret.
    Returns the new rotation's token, or None when there is nothing to start."""
    from keyvault.rotate.journal import TERMINAL

    arn = ctx.backend.name  # type: ignore[attr-defined]
    meta, stages = _stages(ctx, arn)
    if not meta.get("RotationEnabled") or not meta.get("RotationLambdaARN") or len(ctx.env.targets) != 1:
        return None
    current = _holder(stages, CURRENT)
    pending = _holder(stages, PENDING)
    if pending is None or pending == current:
        return None
    text = _get_string(ctx, arn, VersionId=pending, VersionStage=PENDING)
    if text is None:
        return None  # an empty AWSPENDING: a Secrets Manager rotation under way or failed
    state = _journal(ctx).load()
    if state is not None and state.get("phase") not in TERMINAL:
        return None  # the engine or a native rotation is using it: let that finish
    deposit = _key_in(ctx, text, f"the staged key (version {pending})")
    holder = _holder(stages, DEPOSIT_LABEL)
    kwargs = {"RemoveFromVersionId": holder} if holder and holder != pending else {}
    _call(ctx, "update_secret_version_stage", SecretId=arn, VersionStage=DEPOSIT_LABEL, MoveToVersionId=pending, **kwargs)
    _remove_label(ctx, arn, PENDING, pending)
    # naming the configured function again changes nothing on AWS, and moto needs it
    response = _call(ctx, "rotate_secret", SecretId=arn, RotationLambdaARN=meta["RotationLambdaARN"])
    token = response.get("VersionId", "")
    ctx.log(f"keyvault: [maintain] {ctx.target} staged key {deposit.hint} handed to Secrets Manager rotation {token}")
    return token


def native_rotation_under_way(ctx: Context, recent: float = 3600.0) -> str | None:
    """Why the engine must not run now: Secrets Manager is driving a rotation of this secret
    (an empty AWSPENDING version, or a journal its steps parked less than `recent` s ago)."""
    from keyvault.rotate.journal import PARKED, parse_iso, utcnow

    arn = ctx.backend.name  # type: ignore[attr-defined]
    _, stages = _stages(ctx, arn)
    pending = _holder(stages, PENDING)
    if pending is not None and CURRENT not in stages[pending]:
        if _get_string(ctx, arn, VersionId=pending, VersionStage=PENDING) is None:
            return f"version {pending} is an empty AWSPENDING (a Secrets Manager rotation under way, or one that never reached createSecret)"
    state = _journal(ctx).load()
    if state and state.get("phase") == PARKED and state.get("note") == "aws-rotation":
        updated = parse_iso(state.get("updated_at"))
        if updated is not None and (utcnow() - updated).total_seconds() < recent:
            return f"Secrets Manager rotation {state.get('aws_token')} is between steps (journal step {state.get('step')})"
    return None


def maintain(ctx: Context) -> dict[str, Any]:
    """The daily run: start a rotation for a fresh deposit, else let the engine continue
    (revoke after the grace period) or report that the key is due."""
    from keyvault.integrations.scheduled import run_scheduled

    token = start_rotation_from_deposit(ctx)
    if token is not None:
        return {"action": "rotation-started", "token": token}
    busy = native_rotation_under_way(ctx)
    if busy:
        ctx.log(f"keyvault: [maintain] {ctx.target}: {busy}; nothing to do now")
        return {"action": "rotation-under-way", "reason": busy}
    outcome = run_scheduled(ctx.policy, ctx.env.name, notifier=ctx.notifier, log=ctx.log)
    return {"action": "engine", **outcome.to_dict()}


def is_maintenance(event: Mapping[str, Any]) -> bool:
    return event.get("keyvault") == MAINTAIN or (
        event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"
    )


def handler(event: Mapping[str, Any], context: Any = None, *, ctx: Context | None = None) -> dict[str, Any]:
    """The Lambda entry point (`keyvault.integrations.aws_lambda.handler`)."""
    if not isinstance(event, Mapping):
        raise RotationStepError("the event is not a JSON object")
    ctx = ctx or load_context()
    if "Step" in event:
        try:
            return rotation_step(event, ctx)
        except ApiError:
            raise  # undetermined (429, 529, network): AWS retries the step
        except KeyvaultError as exc:
            if not isinstance(exc, NoDepositError):
                ctx.log(f"keyvault: error: {exc}")
            raise
    if is_maintenance(event):
        return maintain(ctx)
    raise RotationStepError(
        "unrecognised event: expected a Secrets Manager rotation event (Step, SecretId, "
        "ClientRequestToken) or {\"keyvault\": \"maintain\"}"
    )
