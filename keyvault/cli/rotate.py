"""`keyvault stage | rotate | status | revoke | incident`: the rotation commands.

Keys come from stdin, a file descriptor or a user command, never from argv. Progress lines
(step, target, hint, timing) go to stdout in text mode and to stderr with `--format json`, so
stdout stays one JSON document.

Exit status of `rotate` and `incident`: 0 done, or parked until a time or a person (awaiting
revoke / manual revoke / archive), or nothing due; 1 rotation due but no new key was given
(a person must create one in the Console); 2 error (the journal keeps the rotation where it
stopped: run again); 3 another rotation is in progress (nothing changed); 4 rolled back (the
new key failed deploy verification; every target is back on the old key).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from keyvault.errors import KeyvaultError

_policy_option = click.option(
    "--policy", "policy_path", metavar="FILE", envvar="KEYVAULT_POLICY",
    help="Rotation policy (default: $KEYVAULT_POLICY, ./rotation.toml, ./policies/rotation.toml).",
)
_env_option = click.option("--env", "env_name", metavar="NAME", help="Environment of the policy (needed when it has several).")
_format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)


def _load_policy(path: str | None) -> Any:
    from keyvault.policy import load_policy

    return load_policy(path)


def _err(text: str) -> None:
    click.echo(text, err=True)


def _reporter(fmt: str) -> Any:
    def report(event: Any) -> None:
        click.echo(event.text(), err=fmt == "json")

    return report


def _interactive(non_interactive: bool) -> bool:
    if non_interactive:
        return False
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _confirm(question: str) -> bool:
    return click.confirm(question, default=False, err=True)


def _emit_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True))


def _read_key_arg(key_fd: int | None, what: str) -> Any:
    """A key from --key-fd or piped stdin; a terminal is refused (it would echo)."""
    from keyvault.rotate import newkey

    if key_fd is not None:
        return newkey.read_fd(key_fd)
    if not newkey.stdin_has_input():
        raise KeyvaultError(
            f"refusing to read {what} typed on the terminal, where it would be echoed: pipe it in "
            "(< keyfile) or pass --key-fd N"
        )
    secret = newkey.read_stdin()
    if secret is None:
        raise KeyvaultError(f"stdin is empty: pipe {what} in (< keyfile) or pass --key-fd N")
    return secret


# -- stage ----------------------------------------------------------------------------------

@click.command()
@_policy_option
@_env_option
@click.option("--target", metavar="URI", help="Stage into this source instead of the policy's primary target.")
@click.option("--key-fd", type=int, metavar="N", help="Read the new key from file descriptor N instead of stdin.")
@click.option("--replace", is_flag=True, help="Replace a different key already staged there.")
@click.option("--clear", is_flag=True, help="Remove the staged key instead of staging one.")
def stage(policy_path: str | None, env_name: str | None, target: str | None, key_fd: int | None,
          replace: bool, clear: bool) -> None:
    """Put a new key (from the Console) in the primary target's pending slot.

    \b
    The next `keyvault rotate` (a scheduled job, say) rotates to it:
      keyvault stage --env prod < keyfile
      keyvault stage --target vault://secret/apps/chat#api_key --key-fd 3 3< keyfile
    """
    from keyvault.backends import open_backend
    from keyvault.keys import API
    from keyvault.rotate.journal import TERMINAL

    if target is None:
        policy = _load_policy(policy_path)
        target = policy.environment(env_name).primary.source
    backend = open_backend(target)
    state, _ = backend.read_state()
    if state is not None and state.get("phase") not in TERMINAL and state.get("step") in (
        "create", "verify-new", "update", "verify-deploy"
    ) or (state is not None and state.get("phase") == "rolling-back"):
        raise KeyvaultError(
            f"{target}: rotation {state.get('rotation')} is using the pending slot (step {state.get('step')}); "
            "let it finish (keyvault rotate) before staging another key"
        )
    pending = backend.read_pending()
    if clear:
        if pending is None:
            click.echo(f"{target}: no key was staged")
            return
        backend.clear_pending()
        click.echo(f"{target}: cleared the staged key {pending.secret.hint}")
        return
    secret = _read_key_arg(key_fd, "the new key")
    if secret.family is not API:
        raise KeyvaultError(f"this is {secret.family.label} ({secret.hint}); stage an API key (sk-ant-api03-...)")
    current = backend.read().secret
    if current.fingerprint == secret.fingerprint:
        raise KeyvaultError(f"{target} already serves {secret.hint}; stage a newly created key")
    if pending is not None and pending.secret.fingerprint == secret.fingerprint:
        click.echo(f"{target}: {secret.hint} is already staged")
        return
    if pending is not None:
        if not replace:
            raise KeyvaultError(
                f"{target} already has a staged key {pending.secret.hint}; pass --replace to drop it "
                "(it stays active in the Console: deactivate it there if it is not used)"
            )
        backend.clear_pending()
    backend.stage(secret)
    click.echo(f"{target}: staged {secret.hint} (sha256 {secret.fingerprint[:12]}); `keyvault rotate` will rotate to it")


# -- rotate ---------------------------------------------------------------------------------

@click.command()
@_policy_option
@_env_option
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--resume", is_flag=True, help="Only continue a rotation in progress (a plain run also does).")
@click.option("--non-interactive", is_flag=True, help="Never prompt; park (exit 0) where a person or a time is needed.")
@click.option("--new-key-fd", type=int, metavar="N", help="Read the new key from file descriptor N.")
@click.option("--new-key-command", metavar="CMD", help="Run CMD (shell) and take the new key from its stdout.")
@click.option("--wait/--no-wait", default=None, help="Sleep through the grace period (default: only when interactive).")
@_format_option
def rotate(policy_path: str | None, env_name: str | None, dry_run: bool, resume: bool, non_interactive: bool,
           new_key_fd: int | None, new_key_command: str | None, wait: bool | None, fmt: str) -> None:
    """Rotate the key: plan, create, verify-new, update, verify-deploy, grace, revoke, archive.

    \b
    The new key comes from the pending slot (keyvault stage), stdin, --new-key-fd,
    --new-key-command, or a hidden prompt; never from the command line. Every step is
    journaled beside the secret: after a crash, run the same command again.
    \b
    Exit: 0 done/parked/not due, 1 due but no new key, 2 error (rerun resumes),
    3 another rotation in progress, 4 rolled back.
    """
    from keyvault.rotate.engine import Options
    from keyvault.rotate.engine import rotate as run_rotation
    from keyvault.rotate.newkey import KeyInput

    if new_key_fd is not None and new_key_command is not None:
        raise click.UsageError("--new-key-fd and --new-key-command are exclusive: the new key comes from one place")
    policy = _load_policy(policy_path)
    interactive = _interactive(non_interactive)
    options = Options(
        env=env_name, dry_run=dry_run, resume=resume, interactive=interactive,
        key_input=KeyInput(fd=new_key_fd, command=new_key_command, stdin=not interactive, prompt=interactive),
        wait=wait, report=_reporter(fmt), say=_err, confirm=_confirm if interactive else None,
    )
    env = policy.environment(env_name).name
    # The scheduled jobs (CronJob, systemd, Actions) run this command: without these calls
    # nobody hears that a key is due, rotated, revoked or that the run failed. A dry run
    # changes nothing and tells nobody. notify_run never raises.
    from keyvault.integrations.scheduled import notify_run

    try:
        result = run_rotation(policy, options)
    except click.exceptions.Abort:
        raise  # a person cancelled a prompt: they know, nothing failed
    except Exception as exc:
        if not dry_run:
            notify_run(policy, env, error=exc)
        if fmt == "json" and isinstance(exc, KeyvaultError):
            _emit_json({"env": env, "phase": "error", "error": str(exc), "exit_code": exc.exit_code})
        raise
    if fmt == "json":
        _emit_json(result.to_dict())
    else:
        click.echo(result.summary)
    if not dry_run:
        notify_run(policy, env, result=result)
    sys.exit(result.exit_code)


# -- status ---------------------------------------------------------------------------------

@click.command()
@_policy_option
@_env_option
@click.option("--due", "due_only", is_flag=True, help="Exit 1 when a key is inside the warning window or overdue.")
@click.option("--offline", is_flag=True, help="Do not ask the Anthropic API whether the keys are live.")
@_format_option
def status(policy_path: str | None, env_name: str | None, due_only: bool, offline: bool, fmt: str) -> None:
    """Show each target's key (hint, fingerprint, version, age), when it is due, whether the
    API still accepts it, whether the targets agree, and any rotation in progress."""
    from keyvault.rotate.status import env_status, render_text

    policy = _load_policy(policy_path)
    names = [policy.environment(env_name).name] if env_name else list(policy.environments)
    reports = [env_status(policy, policy.environment(n), use_api=not offline) for n in names]
    if fmt == "json":
        _emit_json({"environments": [r.to_dict() for r in reports]})
    else:
        for r in reports:
            for line in render_text(r):
                click.echo(line)
    if any(r.errors for r in reports):
        sys.exit(2)
    if due_only and any(r.needs_rotation for r in reports):
        sys.exit(1)


# -- revoke ---------------------------------------------------------------------------------

@click.command()
@click.option("--id", "key_id", metavar="ID", help="The key's Admin API id (apikey_...).")
@click.option("--key-fd", type=int, metavar="N", help="Read the key to revoke from file descriptor N.")
@click.option("--archive", is_flag=True, help="Also archive it (final: an archived key cannot be reactivated).")
@click.option("--force", is_flag=True, help="Revoke even though a policy target still serves the key.")
@_policy_option
@_env_option
@_format_option
def revoke(key_id: str | None, key_fd: int | None, archive: bool, force: bool, policy_path: str | None,
           env_name: str | None, fmt: str) -> None:
    """Deactivate a key through the Admin API (--id, --key-fd, or the key on stdin).

    With the key's value, confirms the API now refuses it (401). When a policy is found, a key
    that one of its targets still serves is refused without --force.
    """
    from keyvault.policy import PolicyError
    from keyvault.rotate.apikeys import KeyService
    from keyvault.rotate.revoke import revoke_key

    if key_id is not None and key_fd is not None:
        raise click.UsageError("--id and --key-fd are exclusive")
    try:
        policy = _load_policy(policy_path)
    except PolicyError:
        if policy_path:
            raise
        policy = None
    secret = None if key_id is not None else _read_key_arg(key_fd, "the key to revoke")
    if policy is not None:
        env = policy.environment(env_name) if (env_name or len(policy.environments) == 1) else next(iter(policy.environments.values()))
        keys = KeyService.for_env(policy, env)
    else:
        keys = KeyService.default()
    try:
        result = revoke_key(keys, key_id=key_id, secret=secret, archive=archive, policy=policy, force=force)
    finally:
        keys.close()
    if fmt == "json":
        _emit_json(result.to_dict())
    else:
        refused = {True: "; the API now refuses it", False: "; WARNING: the API still accepts it", None: ""}[result.refused]
        click.echo(f"{result.key_id} ({result.hint}, {result.name!r}): {result.before} -> {result.after}{refused}")
    sys.exit(0 if result.refused is not False else 2)


# -- incident -------------------------------------------------------------------------------

@click.command()
@click.option("--finding", "finding_path", metavar="FILE", help="A `keyvault scan --format json` report naming the leaked key.")
@click.option("--select", metavar="FP", help="Which key of the report: its fingerprint prefix (or index).")
@click.option("--repo", type=click.Path(file_okay=False), help="Repository the finding's commit is in (default: here).")
@_policy_option
@click.option("--env", "env_names", metavar="NAME", multiple=True, help="Limit to these environments (default: all).")
@click.option("--new-key-fd", type=int, metavar="N", help="Read the replacement key from file descriptor N.")
@click.option("--new-key-command", metavar="CMD", help="Run CMD and take the replacement key from its stdout.")
@click.option("--non-interactive", is_flag=True, help="Never prompt.")
@_format_option
def incident(finding_path: str | None, select: str | None, repo: str | None, policy_path: str | None, env_names: tuple[str, ...],
             new_key_fd: int | None, new_key_command: str | None, non_interactive: bool, fmt: str) -> None:
    """Respond to a leaked key: deactivate it now, rotate every target that held it, and print
    the window whose usage to review.

    \b
    The leaked key comes from stdin or a scan finding:
      keyvault incident < leaked.txt
      keyvault scan --format json > findings.json; keyvault incident --finding findings.json
    """
    from pathlib import Path

    from keyvault.rotate import incident as inc
    from keyvault.rotate.engine import Options
    from keyvault.rotate.newkey import KeyInput, obtain

    if new_key_fd is not None and new_key_command is not None:
        raise click.UsageError("--new-key-fd and --new-key-command are exclusive")
    policy = _load_policy(policy_path)
    if finding_path:
        leak = inc.leak_from_finding(Path(finding_path), select, Path(repo) if repo else None)
    else:
        leak = inc.leak_from_secret(_read_key_arg(None, "the leaked key"))
    # Read the replacement once: a file descriptor or a command's output cannot be read twice.
    new_key = obtain(KeyInput(fd=new_key_fd, command=new_key_command))
    interactive = _interactive(non_interactive) and finding_path is not None

    def options_for(env: str) -> Options:
        return Options(env=env, interactive=interactive, key_input=KeyInput(prompt=interactive), new_key=new_key,
                       report=_reporter(fmt), say=_err, confirm=_confirm if interactive else None, wait=False)

    result = inc.respond(policy, leak, envs=list(env_names) or None, options_factory=options_for, say=_err)
    if fmt == "json":
        _emit_json(result.to_dict())
    else:
        for line in render_incident(result):
            click.echo(line)
    sys.exit(result.exit_code)


def render_incident(result: Any) -> list[str]:
    from keyvault.rotate.journal import iso

    leak = result.leak
    lines = [f"leaked key: {leak.hint or '?'} (sha256 {leak.fingerprint[:12]})" + (f", found at {leak.where}" if leak.where else "")]
    if result.key_id:
        state = "deactivated" if result.deactivated else "NOT deactivated"
        lines.append(f"  {result.key_id} ({result.key_name!r}): {state}" + (f" at {iso(result.deactivated_at)}" if result.deactivated_at else ""))
    if result.refused is not None:
        lines.append("  the API now refuses it (401)" if result.refused else "  WARNING: the API still accepts it")
    if not result.holders:
        lines.append("  no policy target serves it")
    for env, uris in result.holders.items():
        outcome = result.rotations.get(env, {})
        text = outcome.get("summary") or outcome.get("error") or "not rotated"
        lines.append(f"  {env}: served by {', '.join(uris)}: {text}")
    start, end = result.window
    if start or end:
        lines.append(
            f"  review usage from {iso(start) if start else 'the key creation'} to {iso(end) if end else 'now'}: "
            "Console -> Usage (and Logs), filtered to this key; look for unfamiliar models, volumes, hours"
        )
    for note in result.notes:
        lines.append(f"  note: {note}")
    return lines
