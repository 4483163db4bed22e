"""The click group behind `keyvault`: subcommands are imported only when invoked (COMMANDS in
keyvault/cli/__init__.py maps each name to "module:attribute")."""

from __future__ import annotations

import importlib

import click

from keyvault import __version__
from keyvault.cli import COMMANDS


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
