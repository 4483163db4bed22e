"""The scanner as a library call: the same scan the CLI runs, returning the Report instead of
printing it (for `keyvault demo`, multi-repository sweeps and users' own tooling)."""

from __future__ import annotations

import os

from keyvault.scan.config import Excluder, find_config
from keyvault.scan.findings import Report
from keyvault.scan.run import Options, _apply_baseline, _known, scan


def scan_report(mode: str = "paths", *, paths: list[str] | None = None, cwd: str | os.PathLike[str] | None = None,
                range: str | None = None, known: list[str] | None = None, baseline: bool = True) -> Report:
    """Scan like `keyvault scan` (mode: paths | staged | range | history) and return the Report,
    with the inline, baseline and path allowlists applied. Raises keyvault errors on bad input."""
    opts = Options()
    opts.paths = [os.fspath(p) for p in paths or []]
    opts.cwd = os.fspath(cwd) if cwd is not None else None
    opts.staged = mode == "staged"
    opts.history = mode == "history"
    opts.range = range if mode == "range" else None
    opts.known = list(known or [])
    opts.no_baseline = not baseline
    chosen = opts.mode()
    root_cwd = os.path.abspath(opts.cwd or ".")
    cfg = find_config(root_cwd, None)
    report, root = scan(chosen, opts, cfg, Excluder(list(cfg.exclude)), _known(opts.known) if opts.known else None,
                        root_cwd)
    _apply_baseline(report, opts, cfg, root)
    return report


def scan_staged(repo: str | os.PathLike[str]) -> Report:
    """What the pre-commit hook sees in `repo`: the staged changes."""
    return scan_report("staged", cwd=repo)


def scan_repository(repo: str | os.PathLike[str], *, history: bool = True) -> Report:
    """A whole repository: every commit reachable from any ref, or only the work tree."""
    return scan_report("history" if history else "paths", cwd=repo)
