"""Scan many repositories' histories in one process, and report per repository.

An organisation-wide sweep (deploy/github-actions/scan-org.yml) clones a shard of repositories
and hands them all to one `keyvault scan-repos` process: the scanner's start-up is paid once,
repositories are scanned `jobs` at a time in worker processes (the scan is CPU-bound Python
plus a git subprocess, so threads would share one core), and one broken repository (not a
git repository, corrupt objects, a timeout) becomes an error entry in its own report instead
of stopping the others.

The scanning itself is the scanner's public history API (`keyvault.scan`); this module only
fans out, collects and renders. Reports hold hints and fingerprints, never key values.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyvault.errors import KeyvaultError, UnsupportedOperation

# where the scanner's history API may live, first match wins (see scanner_api())
_SCANNER_CANDIDATES = (
    ("keyvault.scan", "scan_repository"),
    ("keyvault.scan", "scan_history"),
    ("keyvault.scan.history", "scan_history"),
    ("keyvault.scan.history", "scan_repository"),
)


@dataclass
class RepoReport:
    repository: str  # the path as given
    findings: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "findings": self.findings, "error": self.error,
                "seconds": round(self.seconds, 3), "stats": self.stats}


def scanner_api() -> Callable[..., Any]:
    """The scanner's function that scans one repository's full history: `f(path, jobs=None)`."""
    for module_name, attr in _SCANNER_CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        function = getattr(module, attr, None)
        if callable(function):
            return function
    try:
        run = importlib.import_module("keyvault.scan.run")
    except ModuleNotFoundError:
        run = None
    if run is not None and all(hasattr(run, n) for n in ("Options", "scan", "find_config", "Excluder")):
        return _history_via_run
    raise UnsupportedOperation(
        "this keyvault's scanner offers no history API (keyvault.scan.scan_repository); "
        "scan-repos cannot run"
    )


def _history_via_run(repo: Path, jobs: int | None = None) -> Any:
    """What `keyvault scan --history` does in `repo` (its own config, excludes and baseline),
    through the scanner's run module, returning the Report instead of printing it."""
    from keyvault.scan import run

    cwd = os.path.abspath(repo)
    opts = run.Options()
    opts.history = True
    opts.cwd = cwd
    opts.jobs = jobs
    cfg = run.find_config(cwd, None)
    excluder = run.Excluder(list(cfg.exclude))
    report, root = run.scan("history", opts, cfg, excluder, None, cwd)
    apply_baseline = getattr(run, "_apply_baseline", None)
    if apply_baseline is not None:
        apply_baseline(report, opts, cfg, root)
    return report


def _finding_dict(finding: Any) -> dict[str, Any]:
    for method in ("to_dict", "as_json"):
        if hasattr(finding, method):
            data = dict(getattr(finding, method)())
            break
    else:
        data = dict(finding)
    # a report travels between processes and into CI artifacts: keep only redacted fields
    data.pop("value", None)
    data.pop("secret", None)
    return data


def _normalise(result: Any) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
    """(findings, stats, error) from whatever the scanner returned."""
    if isinstance(result, dict):
        return [_finding_dict(f) for f in result.get("findings", [])], {
            k: v for k, v in result.items() if k != "findings" and isinstance(v, (int, float, str))}, None
    findings = [_finding_dict(f) for f in getattr(result, "findings", [])]
    stats: dict[str, Any] = {}
    error = None
    scanned = getattr(result, "scanned", None)
    if scanned is not None:
        for name in ("blobs", "commits", "bytes", "skipped"):
            if isinstance(getattr(scanned, name, None), int):
                stats[name] = getattr(scanned, name)
        errors = list(getattr(scanned, "errors", []) or [])
        if errors:
            stats["read_errors"] = len(errors)
            if not (stats.get("blobs") or stats.get("commits")):
                error = "; ".join(errors[:3])
    return findings, stats, error


def scan_one(path: str, jobs: int | None = None) -> RepoReport:
    """Scan one repository; every failure is captured in the report (never raised).
    `jobs` is the scanner's own parallelism (None: every core)."""
    started = time.monotonic()
    report = RepoReport(path)
    try:
        repo = Path(path)
        if not repo.exists():
            raise KeyvaultError(f"{path}: no such directory")
        report.findings, report.stats, report.error = _normalise(scanner_api()(repo, jobs=jobs))
    except KeyvaultError as exc:
        report.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one repository must not stop the sweep
        report.error = f"internal error ({type(exc).__name__})"
    report.seconds = time.monotonic() - started
    return report


def scan_repositories(
    paths: Iterable[str | os.PathLike[str]],
    *,
    jobs: int = 1,
    on_report: Callable[[RepoReport], None] | None = None,
) -> list[RepoReport]:
    """Scan each repository's history; reports come back in the order given."""
    names = [os.fspath(p) for p in paths]
    scanner_api()  # fail once, up front, if there is no scanner at all
    if jobs <= 1 or len(names) <= 1:
        reports = []
        for name in names:
            reports.append(scan_one(name))
            if on_report:
                on_report(reports[-1])
        return reports
    # repositories in parallel, each scanned on one core (the scanner's own workers would
    # multiply the processes past the cores)
    with ProcessPoolExecutor(max_workers=min(jobs, len(names))) as pool:
        reports = []
        for report in pool.map(scan_one, names, [1] * len(names)):
            reports.append(report)
            if on_report:
                on_report(report)
        return reports


def summary(reports: list[RepoReport]) -> dict[str, Any]:
    return {
        "repositories": [r.to_dict() for r in reports],
        "scanned": sum(1 for r in reports if r.error is None),
        "with_findings": sum(1 for r in reports if r.findings),
        "errors": sum(1 for r in reports if r.error is not None),
        "findings": sum(len(r.findings) for r in reports),
    }


def exit_code(reports: list[RepoReport]) -> int:
    """1 when any repository holds a key (what CI must act on), else 2 when any could not be
    scanned, else 0."""
    if any(r.findings for r in reports):
        return 1
    if any(r.error for r in reports):
        return 2
    return 0
