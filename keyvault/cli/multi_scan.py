"""`keyvault scan-repos`: scan many repositories' histories in one process, one report each."""

from __future__ import annotations

import json

import click


@click.command("scan-repos")
@click.argument("repositories", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Repositories scanned at once (worker processes).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def scan_repos(repositories: tuple[str, ...], jobs: int, fmt: str) -> None:
    """Scan the full history of each REPOSITORY (a clone, bare or not) for Anthropic keys.

    Reports per repository: findings (redacted), or the error that stopped that repository
    alone. Exit 1 when any repository holds a key, 2 when any could not be scanned, else 0.
    """
    from keyvault.integrations.multi_scan import exit_code, scan_repositories, summary

    def progress(report: object) -> None:
        if fmt == "text":
            r = report  # type: ignore[assignment]
            if r.error:  # type: ignore[attr-defined]
                click.echo(f"{r.repository}: error: {r.error}")  # type: ignore[attr-defined]
            else:
                n = len(r.findings)  # type: ignore[attr-defined]
                click.echo(f"{r.repository}: {n} finding(s) ({r.seconds:.2f}s)")  # type: ignore[attr-defined]
                for f in r.findings:  # type: ignore[attr-defined]
                    where = ":".join(str(f[k]) for k in ("path", "line") if f.get(k) is not None)
                    commit = f" commit {str(f['commit'])[:12]}" if f.get("commit") else ""
                    click.echo(f"  {f.get('hint', '?')} {where}{commit}")

    reports = scan_repositories(repositories, jobs=jobs, on_report=progress)
    data = summary(reports)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(f"{data['scanned']} scanned, {data['with_findings']} with findings, "
                   f"{data['errors']} error(s), {data['findings']} finding(s)")
    raise SystemExit(exit_code(reports))
