"""One scan from options to exit code: pick the input, scan it, apply the allowlists, render.

Both front ends end here: the click command (`keyvault.cli.scan`) and the lean argv parser
the hook uses (`keyvault.scan.cli`), so they cannot disagree.
"""

from __future__ import annotations

import os
import sys

from keyvault.errors import KeyvaultError
from keyvault.keys import FAMILIES, UNKNOWN, Secret
from keyvault.scan.config import Config, Excluder, find_config
from keyvault.scan.engine import Hit, Known, scan_bytes
from keyvault.scan.findings import Finding, Report

MODES = ("paths", "staged", "range", "history", "stdin", "pre-push", "pre-receive")
FORMATS = ("text", "json", "sarif")
_FAMILY_BY_NAME = {f.name: f for f in (*FAMILIES, UNKNOWN)}


class UsageError(KeyvaultError):
    """The options do not make sense together."""


class Options:
    __slots__ = ("paths", "staged", "range", "history", "stdin", "pre_push", "pre_receive", "format",
                 "output", "verify", "known", "baseline", "no_baseline", "no_gitignore", "config",
                 "exclude", "jobs", "cwd")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.staged = False
        self.range: str | None = None
        self.history = False
        self.stdin = False
        self.pre_push = False
        self.pre_receive = False
        self.format = "text"
        self.output: str | None = None
        self.verify: bool | None = None  # None: as configured (off unless the config says so)
        self.known: list[str] = []
        self.baseline: str | None = None
        self.no_baseline = False
        self.no_gitignore = False
        self.config: str | None = None
        self.exclude: list[str] = []
        self.jobs: int | None = None
        self.cwd: str | None = None

    def mode(self) -> str:
        chosen = [name for name, on in (
            ("staged", self.staged), ("range", self.range is not None), ("history", self.history),
            ("stdin", self.stdin), ("pre-push", self.pre_push), ("pre-receive", self.pre_receive),
        ) if on]
        if len(chosen) > 1:
            flags = " and ".join(f"--{c}" for c in chosen)
            raise UsageError(f"{flags} cannot be combined: choose one input")
        if not chosen:
            return "paths"
        if self.paths and chosen[0] not in ("staged",):
            raise UsageError(f"--{chosen[0]} takes no PATH arguments (got {self.paths[0]!r})")
        return chosen[0]


def execute(opts: Options) -> int:
    """Run the scan; print the report; return the exit code (0 clean, 1 findings, 2 error)."""
    mode = opts.mode()
    if opts.format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)} (got {opts.format!r})")
    if opts.jobs is not None and opts.jobs < 1:
        raise UsageError("--jobs must be 1 or more")
    if mode == "range" and (not (opts.range or "").strip() or (opts.range or "").startswith("-")):
        raise UsageError(f"--range expects A..B (got {opts.range!r})")
    cwd = os.path.abspath(opts.cwd or ".")
    cfg = find_config(cwd, opts.config)
    excluder = Excluder([*cfg.exclude, *opts.exclude])
    known = _known(opts.known) if opts.known else None
    report, root = scan(mode, opts, cfg, excluder, known, cwd)
    _apply_baseline(report, opts, cfg, root)
    verify = cfg.verify if opts.verify is None else opts.verify
    if verify and report.findings:
        _verify(report)
        report.verified = True
    base = "."
    if opts.format == "sarif" and (mode == "paths" or opts.paths):
        from keyvault.scan.gitio import find_git_root

        base = os.path.relpath(cwd, find_git_root(cwd) or cwd)
    _emit(report, opts, mode, verify, base)
    return exit_code(report)


def exit_code(report: Report) -> int:
    s = report.scanned
    if report.findings:
        return 1
    if s.errors and not (s.files or s.blobs or s.commits):
        return 2
    return 0


def scan(mode: str, opts: Options, cfg: Config, excluder: Excluder, known: Known | None,
         cwd: str) -> tuple[Report, str]:
    """The report before baseline and verification, and the directory its paths are relative to."""
    report = Report()
    if mode == "paths":
        _scan_paths(report, opts.paths or ["."], not opts.no_gitignore, cfg, excluder, known, "worktree", cwd)
        return report, cwd
    if mode == "stdin":
        data = sys.stdin.buffer.read()
        report.scanned.files = 1
        report.scanned.bytes = len(data)
        _add(report, scan_bytes(data, known), "-", "stdin", None)
        return report, cwd
    if mode == "staged":
        if opts.paths:
            # The pre-commit framework passes file names (and has stashed unstaged changes, so
            # the files on disk are what is staged). With --all-files nothing is staged at all:
            # scanning the named files whole is what gives every invocation the same verdict.
            _scan_paths(report, opts.paths, False, cfg, excluder, known, "staged", cwd)
            return report, cwd
        _scan_staged(report, cfg, excluder, known, cwd)
        from keyvault.scan.gitio import find_git_root

        return report, find_git_root(cwd) or cwd
    from keyvault.scan import history
    from keyvault.scan.gitio import find_git_root

    history.git_dir_ok(cwd)
    root = find_git_root(cwd) or cwd
    if mode == "history":
        _scan_history(report, opts, cfg, excluder, known, cwd, None)
    else:
        tips, excludes = _range_spec(mode, opts, cwd)
        _scan_history(report, opts, cfg, excluder, known, cwd, (tips, excludes))
    return report, root


def _rel_to(root: str, base: str, path: str) -> str:
    full = os.path.normpath(os.path.join(base, path))
    rel = os.path.relpath(full, root)
    return rel.replace(os.sep, "/")


def _scan_paths(report: Report, paths: list[str], use_gitignore: bool, cfg: Config, excluder: Excluder,
                known: Known | None, source: str, cwd: str) -> None:
    from keyvault.scan import decode, walk

    s = report.scanned
    for path, explicit in walk.list_files(paths, use_gitignore, s.notes, s.errors):
        if excluder and excluder.excluded(_rel_to(cfg.root, cwd, path)):
            s.skipped += 1
            continue
        data = walk.read_file(path, explicit)
        if data is None:
            continue
        if isinstance(data, str):
            s.errors.append(data)
            continue
        s.files += 1
        s.bytes += len(data)
        budget = decode.Budget()
        hits = scan_bytes(data, known, budget)
        s.notes.extend(f"{path}: {n}" for n in budget.notes)
        _add(report, hits, path, source, None)


def _scan_staged(report: Report, cfg: Config, excluder: Excluder, known: Known | None, cwd: str) -> None:
    from keyvault.scan import decode
    from keyvault.scan.gitio import find_git_root
    from keyvault.scan.staged import staged_files

    s = report.scanned
    files = staged_files(cwd)
    if not files:
        s.nothing_staged = True
        return
    root = find_git_root(cwd) or cwd
    for sf in files:
        if excluder and excluder.excluded(_rel_to(cfg.root, root, sf.path)):
            s.skipped += 1
            continue
        s.files += 1
        s.bytes += len(sf.data)
        budget = decode.Budget()
        hits = scan_bytes(sf.data, known, budget)
        s.notes.extend(f"{sf.path}: {n}" for n in budget.notes)
        if sf.lines is not None:
            for h in hits:
                if h.line is not None and not h.member and 0 < h.line <= len(sf.lines):
                    h.line = sf.lines[h.line - 1]
        _add(report, hits, sf.path, "staged", None)


def _object_id(text: str, what: str) -> str:
    """A sha from hook stdin: 40 or 64 hex digits, or a clear usage error (never git's argv)."""
    if len(text) in (40, 64) and all(c in "0123456789abcdefABCDEF" for c in text):
        return text
    raise UsageError(f"{what}: {text[:80]!r} is not an object id (40 or 64 hex digits)")


def _range_spec(mode: str, opts: Options, cwd: str) -> tuple[list[str], list[str]]:
    """(tips, excludes) as rev-list arguments for --range, --pre-push and --pre-receive."""
    from keyvault.scan import gitio

    zero = ("0" * 40, "0" * 64)
    if mode == "range":
        spec = (opts.range or "").strip()
        if not spec or spec.startswith("-") or "\0" in spec:
            raise UsageError(f"--range expects A..B (got {opts.range!r})")
        if "..." in spec:
            a, b = spec.split("...", 1)
            base = gitio.run(["merge-base", a or "HEAD", b or "HEAD"], cwd=cwd)[1].decode().strip()
            return [b or "HEAD"], ["--not", base] if base else []
        if ".." in spec:
            a, b = spec.split("..", 1)
            return [b or "HEAD"], ["--not", a or "HEAD"]
        return [spec], []
    if mode == "pre-receive":
        tips = []
        for line in sys.stdin.read().splitlines():
            parts = line.split()
            if len(parts) < 3:
                if line.strip():
                    raise UsageError(f"--pre-receive expects '<old> <new> <ref>' lines on stdin (got {line[:80]!r})")
                continue
            new = _object_id(parts[1], "--pre-receive")
            _object_id(parts[0], "--pre-receive")
            if new not in zero:  # deletions add nothing
                tips.append(new)
        return tips, ["--not", "--all"]
    # pre-push: under the pre-commit framework the refs come in the environment; a plain git
    # hook gets '<local ref> <local sha> <remote ref> <remote sha>' lines on stdin.
    env = os.environ
    to_ref = env.get("PRE_COMMIT_TO_REF")
    from_ref = env.get("PRE_COMMIT_FROM_REF")
    remote = env.get("PRE_COMMIT_REMOTE_NAME")
    remotes = f"--remotes={remote}" if remote else "--remotes"
    if to_ref:
        excludes = ["--not", from_ref] if from_ref and from_ref not in zero else ["--not", remotes]
        return [to_ref], excludes
    if env.get("PRE_COMMIT") == "1":
        # the framework consumed git's stdin; without refs it is pushing a branch whose root
        # commit is new (or was run by hand): everything the remote does not have yet
        return [env.get("PRE_COMMIT_LOCAL_BRANCH") or "HEAD"], ["--not", remotes]
    tips = []
    excludes = ["--not", "--remotes"]
    lines = [] if sys.stdin.isatty() else sys.stdin.read().splitlines()
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            if line.strip():
                raise UsageError("--pre-push expects '<local ref> <local sha> <remote ref> <remote sha>' "
                                 f"lines on stdin (got {line[:80]!r})")
            continue
        local_sha, remote_sha = _object_id(parts[1], "--pre-push"), _object_id(parts[3], "--pre-push")
        if local_sha in zero:
            continue  # deleting a remote branch pushes nothing
        tips.append(local_sha)
        if remote_sha not in zero:
            code = gitio.run(["cat-file", "-e", f"{remote_sha}^{{commit}}"], cwd=cwd, check=False)[0]
            if code == 0:
                excludes.append(remote_sha)
    return tips, excludes


def _scan_history(report: Report, opts: Options, cfg: Config, excluder: Excluder, known: Known | None,
                  cwd: str, spec: tuple[list[str], list[str]] | None) -> None:
    import time

    from keyvault.scan import history
    from keyvault.scan.pack import _trace

    t = time.perf_counter()
    s = report.scanned
    if spec is None:
        revs = ["--all"]
        messages = history.CommitMessages(revs, cwd)
        objs = history.all_objects(cwd)
    else:
        tips, excludes = spec
        if not tips:
            s.notes.append("nothing to scan: the push or range adds no commits")
            return
        revs = [*tips, *excludes]
        messages = history.CommitMessages(revs, cwd)
        objs = history.range_objects(tips, excludes, cwd)
    from keyvault.scan.gitio import find_git_root

    root = find_git_root(cwd) or cwd
    paths = {o.sha: o.path for o in objs}
    todo = []
    for o in objs:
        if o.kind == "blob":
            if excluder and o.path is not None and excluder.excluded(_rel_to(cfg.root, root, o.path)):
                s.skipped += 1
                continue
            s.blobs += 1
        s.bytes += o.size
        todo.append(o)
    t = _trace(f"list objects ({len(todo)})", t)
    hits, notes = history.scan_objects(todo, known, opts.jobs, cwd)
    t = _trace("scan objects", t)
    n_commits, n_bytes, msg_hits = messages.scan(known)
    s.commits += n_commits
    s.bytes += n_bytes
    hits.extend(msg_hits)
    t = _trace("commit messages", t)
    s.notes.extend(notes)
    blob_hits = [(sha, raw) for sha, kind, raw in hits if kind == "blob"]
    msg_hits = [(sha, raw) for sha, kind, raw in hits if kind != "blob"]
    if msg_hits and spec is None:
        # annotated tags: a tag object no ref points at is not history
        tags = [sha for sha, kind, _ in hits if kind == "tag"]
        reachable = history.reachable_commits(tags, cwd) if tags else set()
        msg_hits = [(sha, raw) for sha, raw in msg_hits if sha in reachable or sha not in tags]
    for sha, raw in msg_hits:
        _add(report, [_hit(r) for r in raw], None, "commit-message", sha)
    if not blob_hits:
        return
    places = history.introductions([sha for sha, _ in blob_hits], revs, cwd)
    _trace("introducing commits", t)
    unreachable = 0
    # one finding per credential and path: where it first entered history
    first: dict[tuple[str, str, str | None], tuple[tuple[int, int], str, Hit]] = {}
    order: list[tuple[str, str, str | None]] = []
    for sha, raw in blob_hits:
        where = places.get(sha)
        if not where:
            if spec is None:
                unreachable += 1
                continue
            where = [("", paths.get(sha) or f"blob:{sha}", 0, 0)]
        for commit, path, when, rank in where:
            age = (when, -rank)  # older: earlier commit time, then later in log order
            if excluder and excluder.excluded(_rel_to(cfg.root, root, path)):
                s.skipped += 1
                continue
            for r in raw:
                h = _hit(r)
                slot = (h.secret.fingerprint, path + h.member, h.chain)
                seen = first.get(slot)
                if seen is None:
                    order.append(slot)
                if seen is None or age < seen[0]:
                    first[slot] = (age, commit, h)
    for slot in order:
        _, commit, h = first[slot]
        path = slot[1][: len(slot[1]) - len(h.member)] if h.member else slot[1]
        _add(report, [h], path, "history", commit or None)
    if unreachable:
        s.notes.append(f"{unreachable} unreachable object{'s' if unreachable != 1 else ''} (no ref leads to "
                       "them) hold credentials; they are not history, and git gc --prune=now deletes them")


def _hit(raw: tuple) -> Hit:  # type: ignore[type-arg]
    value, family_name, line, column, chain, member, allowed, offset = raw
    family = _FAMILY_BY_NAME.get(family_name, UNKNOWN)
    h = Hit(Secret(value, family), family, offset, tuple(chain.split(">")) if chain else (), member)
    h.line = line
    h.column = column
    h.allowed = allowed
    return h


def _add(report: Report, hits: list[Hit], path: str | None, source: str, commit: str | None) -> None:
    for h in hits:
        if h.allowed:
            report.suppressed["allow"] += 1
            continue
        full = (path or "") + h.member if path is not None else (h.member or None)
        report.findings.append(Finding(h.secret, h.family, full, h.line, h.column, commit, source, h.chain,
                                       None if h.line is not None else h.offset))


def _apply_baseline(report: Report, opts: Options, cfg: Config, root: str) -> None:
    if opts.no_baseline:
        return
    path = opts.baseline or cfg.baseline_path()
    if path is None:
        return
    from keyvault.scan import baseline

    if opts.baseline is None and not os.path.exists(path):
        return
    base = baseline.load(path)
    kept = []
    for f in report.findings:
        if base.covers(f, root):
            report.suppressed["baseline"] += 1
        else:
            kept.append(f)
    report.findings = kept


def _known(uris: list[str]) -> Known:
    """The team's current (and pending) keys, through the backends."""
    from keyvault.backends import open_backend

    secrets: list[Secret] = []
    for uri in uris:
        backend = open_backend(uri)
        secrets.append(backend.read().secret)
        try:
            pending = backend.read_pending()
        except KeyvaultError:
            pending = None
        if pending is not None:
            secrets.append(pending.secret)
    return Known(secrets)


def _verify(report: Report) -> None:
    """Ask the Anthropic API whether each distinct key is live (GET /v1/models for API keys,
    /v1/organizations/me for Admin keys; no tokens spent). Never changes the verdict: a key
    that cannot be verified still blocks. The key goes only to the Anthropic API base URL
    (ANTHROPIC_BASE_URL when set); OAuth tokens, session keys and unknown families are never
    sent anywhere (their liveness stays unknown)."""
    from keyvault.keys import ADMIN, API

    try:
        from keyvault.anthropic_api import verify_key
    except ImportError:
        report.scanned.notes.append("--verify: keyvault.anthropic_api is not available; liveness unknown")
        return
    results: dict[str, bool | None] = {}
    for f in report.findings:
        fp = f.fingerprint
        if fp in results:
            f.live = results[fp]
            continue
        outcome: object = None
        if f.family in (API, ADMIN):
            try:
                outcome = verify_key(f.secret)
            except KeyvaultError as exc:
                report.scanned.notes.append(f"--verify {f.hint}: {exc}")
        live = _live(outcome)
        if outcome is not None and live is None:
            summary = getattr(outcome, "summary", None)
            report.scanned.notes.append(f"--verify: {summary() if callable(summary) else f.hint}: liveness unknown")
        results[fp] = f.live = live


def _live(outcome: object) -> bool | None:
    if outcome is None or isinstance(outcome, bool):
        return outcome
    live = getattr(outcome, "live", None)
    return live if isinstance(live, bool) else None


def _emit(report: Report, opts: Options, mode: str, verify: bool, base: str = ".") -> None:
    """`base`: where the finding paths start, relative to the top of the work tree (SARIF
    locations must be relative to the repository root for code scanning)."""
    from keyvault.scan import report as render

    report.findings.sort(key=Finding.sort_key)
    if opts.format == "json":
        text = render.as_json(report, verify)
    elif opts.format == "sarif":
        from keyvault import __version__

        text = render.sarif(report, verify, __version__, base)
    else:
        text = render.text(report, mode, verify)
    err = sys.stderr
    for note in report.scanned.notes:
        err.write(f"keyvault: note: {note}\n")
    for problem in report.scanned.errors:
        err.write(f"keyvault: warning: {problem}\n")
    if opts.output:
        tmp = f"{opts.output}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, opts.output)
        except OSError as exc:
            raise KeyvaultError(f"{opts.output}: cannot write the report ({exc.strerror})") from None
        return
    sys.stdout.write(text)
    sys.stdout.flush()
