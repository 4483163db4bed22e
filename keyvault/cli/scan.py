"""`keyvault scan`, `keyvault baseline` and `keyvault hook`: the leak gate's commands.

`keyvault scan` normally never reaches this module: keyvault.cli.main hands it to the lean
parser in keyvault.scan.cli (no click import: the pre-commit hook stays fast). This click
command is the same command for --help and for anything the lean parser declines; both end in
keyvault.scan.run.execute.
"""

from __future__ import annotations

import sys

import click

from keyvault.keys import Secret
from keyvault.scan.run import FORMATS, Options, execute

_EPILOG = """\b
Exit status: 0 nothing found, 1 credentials found, 2 usage or runtime error
(exit 2 for unreadable input only when nothing at all could be scanned).

\b
Examples:
  keyvault scan                      the working tree (what git does not ignore)
  keyvault scan --staged             what the next commit adds (the pre-commit hook)
  keyvault scan --history            every blob and commit message reachable from any ref
  keyvault scan --range main..HEAD   what a branch adds
  kubectl get secret x -o yaml | keyvault scan --stdin
  keyvault scan --format sarif -o keyvault.sarif   for GitHub code scanning

\b
Allowlisting: a 'keyvault: allow' comment on the line; a baseline file
(keyvault baseline create); path globs in [tool.keyvault.scan] exclude = [...]
(pyproject.toml or keyvault.toml)."""


@click.command(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--staged", is_flag=True, help="Scan what is staged for the next commit (added lines). "
              "With PATHs (as the pre-commit framework passes them), scan those files whole.")
@click.option("--range", "range_", metavar="A..B", help="Scan the commits in a range (blobs and messages).")
@click.option("--history", is_flag=True, help="Scan every commit reachable from any ref: each unique blob "
              "once, and commit messages.")
@click.option("--stdin", "stdin", is_flag=True, help="Scan standard input.")
@click.option("--pre-push", is_flag=True, help="Scan the commits being pushed (git pre-push hook stdin, "
              "or the pre-commit framework's PRE_COMMIT_FROM_REF/TO_REF).")
@click.option("--pre-receive", is_flag=True, help="Server-side hook: scan what '<old> <new> <ref>' lines on "
              "stdin add (new branches and deletions handled).")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to a file.")
@click.option("--verify/--no-verify", default=None, help="Ask the Anthropic API whether each key found is "
              "live (adds \"live\" to JSON). Never changes the verdict. Default: off, unless the config "
              "says verify = true.")
@click.option("--known", multiple=True, metavar="SOURCE_URI", help="Also report exact occurrences of the key "
              "held by this source (e.g. env://ANTHROPIC_API_KEY, vault://...), where no pattern would match. "
              "Repeatable.")
@click.option("--baseline", type=click.Path(dir_okay=False), help="Baseline file of accepted credentials "
              "(default: the configured one, else .keyvault-baseline.json if present).")
@click.option("--no-baseline", is_flag=True, help="Ignore the baseline: report everything.")
@click.option("--no-gitignore", is_flag=True, help="Also scan files git ignores.")
@click.option("--config", type=click.Path(dir_okay=False), help="Config file (default: keyvault.toml or "
              "pyproject.toml in this directory or a parent).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip paths matching this glob (repeatable; "
              "adds to the config's exclude).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="History readers to run in parallel "
              "(default: one per core).")
def scan(paths: tuple[str, ...], staged: bool, range_: str | None, history: bool, stdin: bool, pre_push: bool,
         pre_receive: bool, fmt: str, output: str | None, verify: bool | None, known: tuple[str, ...],
         baseline: str | None, no_baseline: bool, no_gitignore: bool, config: str | None,
         exclude: tuple[str, ...], jobs: int | None) -> None:
    """Find Anthropic credentials (API keys, Admin keys, OAuth tokens, session keys) in files,
    staged changes, git history or stdin, also base64-encoded, URL-encoded, in UTF-16 files,
    gzip files and zip archives (jar, whl, docx).

    Output lines are `path:line:col rule hint`; keys are shown only as hints
    (sk-ant-api03-R2D...igAA) and sha256 fingerprints, never in full.
    """
    opts = Options()
    opts.paths = list(paths)
    opts.staged = staged
    opts.range = range_
    opts.history = history
    opts.stdin = stdin
    opts.pre_push = pre_push
    opts.pre_receive = pre_receive
    opts.format = fmt
    opts.output = output
    opts.verify = verify
    opts.known = list(known)
    opts.baseline = baseline
    opts.no_baseline = no_baseline
    opts.no_gitignore = no_gitignore
    opts.config = config
    opts.exclude = list(exclude)
    opts.jobs = jobs
    sys.exit(execute(opts))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def baseline() -> None:
    """Record credentials you have reviewed and accept (revoked test keys, fixtures), so scans
    stop reporting them. The baseline stores sha256 fingerprints, hints and paths, never values
    and never line numbers: unrelated edits do not change it."""


def _baseline_scan(paths: tuple[str, ...], history: bool, file: str | None, config: str | None):  # type: ignore[no-untyped-def]
    import os

    from keyvault.scan.config import Excluder, find_config
    from keyvault.scan.run import scan as run_scan

    opts = Options()
    opts.paths = list(paths)
    opts.history = history
    opts.config = config
    cwd = os.getcwd()
    cfg = find_config(cwd, config)
    mode = opts.mode()
    report, root = run_scan(mode, opts, cfg, Excluder(cfg.exclude), None, cwd)
    for note in report.scanned.notes:
        click.echo(f"keyvault: note: {note}", err=True)
    for problem in report.scanned.errors:
        click.echo(f"keyvault: warning: {problem}", err=True)
    path = file or cfg.baseline_path() or os.path.join(cfg.root, ".keyvault-baseline.json")
    return report, root, path


_paths_arg = click.argument("paths", nargs=-1, type=click.Path())
_history_opt = click.option("--history", is_flag=True, help="Take the findings of a history scan instead of "
                            "the working tree.")
_file_opt = click.option("--file", "file", type=click.Path(dir_okay=False), help="Baseline file (default: "
                         "configured, else .keyvault-baseline.json at the top of the work tree).")
_config_opt = click.option("--config", type=click.Path(dir_okay=False), help="Config file.")


@baseline.command("create")
@_paths_arg
@_history_opt
@_file_opt
@_config_opt
@click.option("--force", is_flag=True, help="Replace an existing baseline.")
def baseline_create(paths: tuple[str, ...], history: bool, file: str | None, config: str | None,
                    force: bool) -> None:
    """Scan, and record every credential found as accepted."""
    import os

    from keyvault.scan.baseline import Baseline

    report, root, path = _baseline_scan(paths, history, file, config)
    if os.path.exists(path) and not force:
        raise click.ClickException(f"{path} already exists; use 'keyvault baseline update' to add to it, "
                                   "or --force to replace it")
    base = Baseline(path)
    for f in report.findings:
        base.add(f, root)
    base.save()
    n = len(base.entries)
    click.echo(f"keyvault baseline: wrote {path} ({n} credential{'s' if n != 1 else ''}, "
               f"{sum(len(e.paths) for e in base.entries.values())} location(s))")


@baseline.command("update")
@_paths_arg
@_history_opt
@_file_opt
@_config_opt
@click.option("--prune", is_flag=True, help="Also drop entries that are no longer found.")
def baseline_update(paths: tuple[str, ...], history: bool, file: str | None, config: str | None,
                    prune: bool) -> None:
    """Scan, and add what is found to the baseline (kept entries stay as they are)."""
    import os

    from keyvault.scan.baseline import Baseline, load

    report, root, path = _baseline_scan(paths, history, file, config)
    base = load(path) if os.path.exists(path) else Baseline(path)
    before = base.dumps()
    if prune:
        fresh = Baseline(path)
        for f in report.findings:
            fresh.add(f, root)
        for fp, entry in fresh.entries.items():
            old = base.entries.get(fp)
            if old is not None:
                entry.rule, entry.hint = old.rule or entry.rule, old.hint or entry.hint
        base = fresh
    else:
        for f in report.findings:
            base.add(f, root)
    if base.dumps() == before and os.path.exists(path):
        click.echo(f"keyvault baseline: {path} is up to date")
        return
    base.save()
    click.echo(f"keyvault baseline: updated {path} ({len(base.entries)} credential(s))")


@baseline.command("audit")
@_file_opt
@_config_opt
@click.option("--verify", is_flag=True, help="Ask the Anthropic API whether each accepted key is still live.")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def baseline_audit(file: str | None, config: str | None, verify: bool, fmt: str) -> None:
    """List the accepted credentials, where each still occurs, and (with --verify) whether it is
    live. Exit 1 when an accepted key is live or its recorded locations no longer exist."""
    import json
    import os

    from keyvault.scan.baseline import load
    from keyvault.scan.config import find_config

    cfg = find_config(os.getcwd(), config)
    path = file or cfg.baseline_path() or os.path.join(cfg.root, ".keyvault-baseline.json")
    base = load(path)
    report, root, _ = _baseline_scan((), False, path, config)
    present: dict[str, set[str]] = {}
    secrets: dict[str, Secret] = {}
    for f in report.findings:
        present.setdefault(f.fingerprint, set()).add(base.location(f, root))
        secrets.setdefault(f.fingerprint, f.secret)
    live: dict[str, bool | None] = {}
    if verify:
        from keyvault.scan.run import _live

        try:
            from keyvault.anthropic_api import verify_key
        except ImportError:
            verify_key = None  # type: ignore[assignment]
        for fp, secret in secrets.items():
            live[fp] = _live(verify_key(secret)) if verify_key is not None and fp in base.entries else None
    rows: list[dict[str, object]] = []
    lines: list[str] = []
    bad = False
    for fp in sorted(base.entries):
        e = base.entries[fp]
        found = present.get(fp, set())
        stale = sorted(p for p in e.paths if p not in found)
        state = live.get(fp) if verify else None
        rows.append({"fingerprint": fp, "rule": e.rule, "hint": e.hint, "paths": sorted(e.paths),
                     "stale_paths": stale, "live": state})
        if stale or state:
            bad = True
        status = []
        if stale:
            status.append(f"no longer found in {', '.join(stale)} (run: keyvault baseline update --prune)")
        if verify:
            status.append({True: "LIVE: revoke it (keyvault incident)", False: "not live",
                           None: "liveness unknown"}[state])
        lines.append(f"{e.hint}  {e.rule}  {', '.join(sorted(e.paths))}"
                     + (f"  [{'; '.join(status)}]" if status else ""))
    if fmt == "json":
        click.echo(json.dumps({"version": 1, "baseline": path, "credentials": rows}, indent=2))
    else:
        for line in lines:
            click.echo(line)
        click.echo(f"keyvault baseline: {len(rows)} accepted credential(s) in {path}")
    sys.exit(1 if bad else 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def hook() -> None:
    """Plain git hooks (for teams without the pre-commit framework)."""


@hook.command("install")
@click.option("--pre-push", is_flag=True, help="Also install the pre-push hook (scans the commits being pushed).")
@click.option("--force", is_flag=True, help="Replace an existing hook that is not keyvault's (it is kept as "
              "<hook>.keyvault-backup).")
def hook_install(pre_push: bool, force: bool) -> None:
    """Install the pre-commit hook (and with --pre-push the pre-push hook) in this repository,
    honouring core.hooksPath and linked worktrees. Never overwrites a foreign hook without
    --force."""
    from keyvault.scan.hooks import install

    names = ["pre-commit", "pre-push"] if pre_push else ["pre-commit"]
    for path, what in install(names, force=force):
        click.echo(f"keyvault hook: {path}: {what}")
