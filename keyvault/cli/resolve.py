"""`keyvault get` (where the app's key comes from) and `keyvault exec` (run a command with it).

`get` shows the source that served the key, its hint, fingerprint, version and age, resolved
exactly as the app's `keyvault.get_api_key()` would (same config, same fallbacks, same
validation). `--reveal` prints the value, only into a pipe or file, never onto a terminal where
it would stay in scrollback; like `vault kv get -field`, it prints no trailing newline.

`exec` puts the key into the command's environment only: never in argv, never on disk. On
POSIX it replaces itself with the command (os.execvpe), so the exit status, signals and
stdin/stdout are the command's own; a command that cannot be run exits 127 (not found) or 126
(not executable), as shells do.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

import click

from keyvault.errors import KeyvaultError


def _age(created: datetime | None) -> tuple[str, float | None]:
    if created is None:
        return "unknown (this source records no creation time)", None
    seconds = (datetime.now(timezone.utc) - created).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} (created {created.isoformat()})", seconds
    return f"{int(seconds)} seconds (created {created.isoformat()})", seconds


@click.command()
@click.option("--source", metavar="URI", help="Where the key lives (default: the app's configuration).")
@click.option("--reveal", is_flag=True, help="Print the key itself, for a pipe (refused on a terminal).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def get(source: str | None, reveal: bool, fmt: str) -> None:
    """Show where the Anthropic API key comes from: source, hint, version, age."""
    from keyvault.resolve import lookup

    if reveal and sys.stdout.isatty():
        raise KeyvaultError(
            "refusing to print the key to a terminal (it would stay in scrollback and screen "
            "shares); pipe it instead: keyvault get --reveal | pbcopy, or use keyvault exec -- CMD"
        )
    resolved = lookup(source)
    if reveal:
        sys.stdout.write(resolved.secret.reveal())
        sys.stdout.flush()
        return
    age_text, age_seconds = _age(resolved.created)
    if fmt == "json":
        click.echo(json.dumps({
            "source": resolved.source,
            "configured_by": resolved.origin,
            "hint": resolved.secret.hint,
            "fingerprint": resolved.secret.fingerprint,
            "version": resolved.version,
            "created": resolved.created.isoformat() if resolved.created else None,
            "age_seconds": None if age_seconds is None else int(age_seconds),
        }, indent=2))
        return
    rows = [
        ("source", resolved.source),
        ("configured by", resolved.origin),
        ("key", resolved.secret.hint),
        ("fingerprint", resolved.secret.fingerprint[:16]),
        ("version", resolved.version),
        ("age", age_text),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':<15}{value}")


@click.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--source", metavar="URI", help="Where the key lives (default: the app's configuration).")
@click.option("--var", default="ANTHROPIC_API_KEY", show_default=True, metavar="NAME",
              help="The environment variable the command reads the key from.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(source: str | None, var: str, command: tuple[str, ...]) -> None:
    """Run COMMAND with the key in its environment only: keyvault exec -- python app.py"""
    import re

    from keyvault.resolve import get_api_key

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
        raise click.BadParameter(f"{var!r} is not an environment variable name", param_hint="--var")
    secret = get_api_key(source)
    env = dict(os.environ)
    env[var] = secret.reveal()
    argv = list(command)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":  # pragma: no cover - no exec(2): run it and pass the status through
        import subprocess

        try:
            sys.exit(subprocess.call(argv, env=env))
        except FileNotFoundError:
            _cannot_run(argv[0], "not found", 127)
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        _cannot_run(argv[0], "not found (is it on PATH?)", 127)
    except PermissionError:
        _cannot_run(argv[0], "permission denied (not executable?)", 126)
    except OSError as exc:
        _cannot_run(argv[0], exc.strerror or str(exc), 126)


def _cannot_run(name: str, why: str, code: int) -> None:
    click.echo(f"keyvault: error: cannot run {name!r}: {why}", err=True)
    sys.exit(code)

