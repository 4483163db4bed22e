"""The `keyvault` command: a thin click layer over the library.

Subcommands live one per module under `keyvault.cli` and are imported only when invoked, so
`keyvault scan --staged` (the pre-commit hook) never pays for the backends or HTTP client.
Errors are one line on stderr and exit 2; `--debug` adds the traceback (which never holds a
key value: every exception message is built from hints and fingerprints).
"""

from __future__ import annotations

import sys
from typing import Any

from keyvault.errors import KeyvaultError

# command name -> "module:attribute"; a missing module means the command is not built yet.
COMMANDS: dict[str, str] = {
    "verify": "keyvault.cli.verify:verify",
    "get": "keyvault.cli.resolve:get",
    "exec": "keyvault.cli.resolve:exec_",
    "scan": "keyvault.cli.scan:scan",
    "baseline": "keyvault.cli.scan:baseline",
    "hook": "keyvault.cli.scan:hook",
    "scan-repos": "keyvault.cli.multi_scan:scan_repos",
    "stage": "keyvault.cli.rotate:stage",
    "rotate": "keyvault.cli.rotate:rotate",
    "status": "keyvault.cli.rotate:status",
    "revoke": "keyvault.cli.rotate:revoke",
    "incident": "keyvault.cli.rotate:incident",
    "demo": "keyvault.cli.demo:demo",
    "audit": "keyvault.cli.audit:audit",
}


def __getattr__(name: str) -> Any:
    # The click group lives in keyvault.cli.app so that `keyvault scan` (the pre-commit hook)
    # can run without importing click; `from keyvault.cli import cli` still works.
    if name in ("cli", "LazyGroup"):
        from keyvault.cli import app

        return getattr(app, name)
    raise AttributeError(f"module 'keyvault.cli' has no attribute {name!r}")


def _echo_err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def fail(message: str, code: int = 2) -> None:
    """Report a usage or runtime error the way every command does."""
    _echo_err(f"keyvault: error: {message}")
    sys.exit(code)


def _run(args: list[str]) -> Any:
    # Fast path: `keyvault scan ...` is the pre-commit hook; its own argv parser avoids
    # importing click. It returns None for anything it does not handle (--help, a typo).
    if args[:1] == ["scan"]:
        from keyvault.scan.cli import main as scan_main

        code = scan_main(args[1:])
        if code is not None:
            sys.exit(code)
    import click

    from keyvault.cli.app import cli

    try:
        rv = cli.main(args=args, prog_name="keyvault", standalone_mode=False)
    except click.exceptions.Abort:
        _echo_err("Aborted!")
        sys.exit(1)
    except click.ClickException as exc:
        # usage errors quote what was typed ("No such command '...'"): a key pasted as an
        # argument must not be echoed back into the terminal's scrollback or a CI log
        from keyvault.redact import redact

        exc.message = redact(exc.message)
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(rv, int):  # ctx.exit(code), --help and --version under standalone_mode=False
        sys.exit(rv)
    return None


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    from keyvault.hardening import disable_core_dumps

    disable_core_dumps()  # before any key is read: a crash must leave no core file holding it
    debug = "--debug" in args
    try:
        return _run(args)
    except KeyvaultError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        from keyvault.redact import redact

        _echo_err(f"keyvault: error: {redact(str(exc))}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _echo_err("keyvault: interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: say so without echoing a message that might hold data
        if debug:
            import traceback

            traceback.print_exc()
        _echo_err(f"keyvault: internal error ({type(exc).__name__}); rerun with --debug for the traceback")
        sys.exit(2)
