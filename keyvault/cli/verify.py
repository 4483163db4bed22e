"""`keyvault verify`: ask the Anthropic API whether a key works, without spending tokens.

The key comes from stdin, a hidden prompt, or a source URI: never from argv, where `ps`, shell
history and CI logs would keep it.
"""

from __future__ import annotations

import json
import sys

import click

from keyvault.errors import KeyFormatError, KeyvaultError
from keyvault.keys import ADMIN, API, Secret, parse_key

# exit codes: 0 active; 1 the API answered and the key cannot be used; 2 could not tell, or a
# usage error. A rotation script can revoke on 1 and must not on 2.
EXIT_UNUSABLE = {"invalid", "forbidden", "billing", "unfunded", "rate_limited"}

EXPLAIN = {
    "active": "the key works",
    "unfunded": "the key is live, but the organization's credit balance is too low",
    "invalid": "the key is invalid, deactivated, archived or expired",
    "forbidden": "the key is live but not allowed to use this resource",
    "billing": "the organization has a billing or payment problem",
    "rate_limited": "the key's organization is rate limited",
    "overloaded": "the API is overloaded; the key's state is unknown",
    "server_error": "the API failed; the key's state is unknown",
    "network_error": "the API could not be reached; the key's state is unknown",
    "unexpected": "the API gave an unexpected answer; the key's state is unknown",
}


def _refuse_arguments(args: list[str]) -> None:
    """Extra arguments are never echoed: a user who typed the key there must not see it in CI logs."""
    if any("sk-ant-" in arg for arg in args):
        raise KeyvaultError(
            "verify does not take a key on the command line; it is now in your shell history and "
            "visible to other processes: rotate it if this machine is shared, and pipe the key "
            "instead (keyvault verify < keyfile)"
        )
    raise KeyvaultError(
        f"verify takes no arguments ({len(args)} given); pipe the key (keyvault verify < keyfile), "
        "or use --prompt or --source URI"
    )


def _read_key(source: str | None, prompt: bool) -> Secret:
    if source is not None:
        if "sk-ant-" in source:
            raise KeyvaultError(
                "--source takes a URI (env://ANTHROPIC_API_KEY), not the key itself; the key is now "
                "in your shell history: pipe it instead (keyvault verify < keyfile)"
            )
        if prompt:
            raise click.UsageError("--source and --prompt are exclusive: the key comes from one place")
        from keyvault.backends import open_backend

        return open_backend(source).read().secret
    if prompt:
        text = click.prompt("Anthropic key", hide_input=True, prompt_suffix=": ", err=True)
    else:
        stdin = sys.stdin
        if stdin is None or stdin.isatty():
            raise KeyvaultError(
                "refusing to read a key typed on the terminal, where it would be echoed: pipe it in "
                "(keyvault verify < keyfile), use --prompt to type it hidden, or --source URI"
            )
        text = stdin.read()
        if text.endswith("\n") and not text.endswith("\r\n"):
            text = text[:-1]  # what `echo KEY |` and heredocs add: expected, not worth a note
    secret = parse_key(text)
    if secret.family not in (API, ADMIN):
        raise KeyFormatError(
            f"verify checks API keys (sk-ant-api03-...) and Admin keys (sk-ant-admin01-...); "
            f"this is {secret.family.label}"
        )
    if secret.trimmed:  # pasted extras are the usual cause of 401s: the other copies may have them too
        click.echo(f"keyvault: note: trimmed {', '.join(secret.trimmed)} from the key", err=True)
    return secret


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--source", metavar="URI", help="Read the key from a source (env://, dotenv://, vault://, ...).")
@click.option("--prompt", is_flag=True, help="Type the key at a hidden prompt instead of piping it.")
@click.option("--base-url", metavar="URL", help="API root (default: $ANTHROPIC_BASE_URL, else the real API).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds per request.")
@click.option("--retries", type=click.IntRange(min=0, max=10), default=2, show_default=True,
              help="Retries on 429, 5xx, 529 and network errors.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def verify(ctx: click.Context, source: str | None, prompt: bool, base_url: str | None, timeout: float,
           retries: int, fmt: str) -> None:
    """Check a key against the API: GET /v1/models (Admin key: /v1/organizations/me).

    \b
    The key is read from stdin, never from the command line:
      keyvault verify < keyfile
      keyvault verify --prompt
      keyvault verify --source env://ANTHROPIC_API_KEY

    \b
    Exit status: 0 active; 1 the key cannot be used (invalid, forbidden, billing,
    unfunded, rate limited); 2 the state is unknown (network, overload, server error)
    or a usage error.
    """
    if ctx.args:
        _refuse_arguments(ctx.args)
    secret = _read_key(source, prompt)
    from keyvault.anthropic_api import verify_key

    status = verify_key(secret, base_url=base_url, timeout=timeout, retries=retries)
    if fmt == "json":
        payload = status.to_dict()
        payload["fingerprint"] = secret.fingerprint
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(status.summary())
        line = EXPLAIN.get(status.state, "")
        if status.spend_cap_reached:
            line = "the organization reached its monthly spend cap: no requests until next month"
        if status.state == "network_error" and status.message:
            line = f"{line} ({status.message})"
        if line and status.state != "active":
            click.echo(f"  {line}")
    if status.state == "active":
        code = 0
    elif status.state in EXIT_UNUSABLE:
        code = 1
    else:
        code = 2
    sys.exit(code)
