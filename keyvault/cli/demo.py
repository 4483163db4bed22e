"""`keyvault demo`: the whole life of a key, offline, in seconds (see keyvault.demo)."""

from __future__ import annotations

import sys

import click


@click.command()
def demo() -> None:
    """Run the whole life of a key offline: mint, store, resolve, refuse a commit, rotate, revoke.

    Everything runs on loopback and in a temporary directory that is removed at the end: the
    fake Anthropic API plays the Console, the key lives in a .env file and the encrypted local
    store. No cloud account, no network, no key value printed.
    """
    from keyvault.demo import run_demo

    sys.exit(run_demo(click.echo))
