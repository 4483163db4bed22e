"""The `keyvault` command: a thin click layer over the library.

Subcommands live one per module under `keyvault.cli` and are imported only when invoked, so
`keyvault scan --staged` (the pre-commit hook) never pays for the backends or HTTP client.
Errors are one line on stderr and exit 2; `--debug` adds the traceback (which never holds a
key value: every exception message is built from hints and fingerprints).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from keyvault import __version__
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


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr, None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="keyvault")
@click.option("--debug", is_flag=True, help="On error, show the traceback (never a key value).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Resolve, rotate and guard Anthropic API keys.

    \b
    Start here:
      keyvault demo                 the whole life of a key, offline, in seconds
      keyvault scan --staged        refuse a commit that holds a key
      keyvault get                  where the app's key comes from (hint, version, age)
      keyvault rotate               create -> update -> verify -> revoke

    Keys are read from stdin, a file descriptor or a backend; never from the command line.
    """
    ctx.obj = {"debug": debug}


def fail(message: str, code: int = 2) -> None:
    """Report a usage or runtime error the way every command does."""
    click.echo(f"keyvault: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    from keyvault.hardening import disable_core_dumps

    disable_core_dumps()  # before any key is read: a crash must leave no core file holding it
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="keyvault", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        # usage errors quote what was typed ("No such command '...'"): a key pasted as an
        # argument must not be echoed back into the terminal's scrollback or a CI log
        from keyvault.redact import redact

        exc.message = redact(exc.message)
        exc.show()
        sys.exit(exc.exit_code)
    except KeyvaultError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"keyvault: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("keyvault: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so without echoing a message that might hold data
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(
            f"keyvault: internal error ({type(exc).__name__}); rerun with --debug for the traceback",
            err=True,
        )
        sys.exit(2)
    if isinstance(rv, int):  # ctx.exit(code), --help and --version under standalone_mode=False
        sys.exit(rv)
    return None
