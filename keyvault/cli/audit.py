"""`keyvault audit verify|show`: check and read the tamper-evident audit log.

verify exits 0 when the chain is intact, 1 when it shows tampering (each problem with its line
and reason), 2 on usage errors (no log, no key). show prints the records; it does not need the
key, so it proves nothing: it says so and points at verify.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from keyvault.audit import AuditLog
from keyvault.redact import credential_in, redact

_FORMAT = click.Choice(["text", "json"])


def _open(path: Path | None, key_file: Path | None) -> AuditLog:
    log = AuditLog(path)
    if key_file is not None:
        log.key_path = key_file
    return log


@click.group()
def audit() -> None:
    """The tamper-evident audit log of key lifecycle events (fingerprints and ids only).

    \b
    The log is $KEYVAULT_AUDIT_LOG, else $XDG_STATE_HOME/keyvault/audit.jsonl. Its MAC key is
    $KEYVAULT_AUDIT_KEY, else the file <log>.key beside it.
    """


@audit.command()
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--key-file", type=click.Path(path_type=Path, dir_okay=False), help="The MAC key file (default: <log>.key)."
)
@click.option("--format", "fmt", type=_FORMAT, default="text", show_default=True)
def verify(path: Path | None, key_file: Path | None, fmt: str) -> None:
    """Check every record's MAC, the chain and the head. Exit 1 on tampering."""
    log = _open(path, key_file)
    report = log.verify()
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    elif report.ok:
        click.echo(
            f"{log.path}: intact, {report.records} records, chain and head verified (last seq {report.last_seq})"
        )
    else:
        count = len(report.problems) + report.omitted
        click.echo(f"{log.path}: TAMPERED ({count} problem{'s' if count != 1 else ''})")
        for problem in report.problems:
            click.echo(f"  {problem}")
        if report.omitted:
            click.echo(f"  ... and {report.omitted} more")
    sys.exit(0 if report.ok else 1)


@audit.command()
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=_FORMAT, default="text", show_default=True)
def show(path: Path | None, fmt: str) -> None:
    """Print the records (unverified; run 'keyvault audit verify' for evidence)."""
    log = AuditLog(path)
    bad = 0
    records = []
    for line in log.lines():
        if line.record is None:
            bad += 1
            click.echo(f"keyvault: warning: {log.path}: line {line.number}: {line.error}", err=True)
            continue
        records.append(line.record)
    if fmt == "json":
        records = [_redacted(r) for r in records]  # JSON escapes control characters itself
        click.echo(json.dumps(records, indent=2))
    else:
        for rec in records:
            fields = " ".join(f"{k}={_show_value(v)}" for k, v in rec["fields"].items())
            head = f"{rec['seq']:>6}  {_show_value(rec['time'])}  {_show_value(rec['event'])}"
            click.echo(head + (f"  {fields}" if fields else ""))
        click.echo(f"({len(records)} records, not verified: run 'keyvault audit verify')", err=True)
    sys.exit(1 if bad else 0)


def _show_value(value: object) -> str:
    # an edited log could carry a key value or terminal escapes: show prints neither
    if isinstance(value, str) and value and value.isprintable() and not any(c in " \"'=" for c in value):
        return redact(value)
    return redact(json.dumps(value))


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(record)
    return json.loads(redact(text)) if credential_in(text) else record
