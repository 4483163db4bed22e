"""The scanner's result types: a Finding (what the output contract reports) and the Report
(findings plus what was scanned). Plain classes with slots: the hook imports this module."""

from __future__ import annotations

from keyvault.keys import Family, Secret

RULES = (
    "anthropic-api-key",
    "anthropic-admin-key",
    "anthropic-oauth-token",
    "anthropic-session-key",
    "anthropic-unknown-credential",
)
SOURCES = ("worktree", "staged", "history", "commit-message", "stdin")


class Finding:
    __slots__ = ("secret", "family", "path", "line", "column", "commit", "source", "decoded", "live",
                 "offset")

    def __init__(self, secret: Secret, family: Family, path: str | None, line: int | None,
                 column: int | None, commit: str | None, source: str, decoded: str | None,
                 offset: int | None = None) -> None:
        self.secret = secret
        self.family = family
        self.path = path
        self.line = line
        self.column = column
        self.commit = commit
        self.source = source
        self.decoded = decoded
        self.live: bool | None = None
        self.offset = offset  # byte offset, shown for binary files where lines mean nothing

    @property
    def rule(self) -> str:
        return self.family.rule

    @property
    def hint(self) -> str:
        return self.secret.hint

    @property
    def fingerprint(self) -> str:
        return self.secret.fingerprint

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path or "", self.line or 0, self.column or 0, self.commit or "")

    def as_json(self, with_live: bool = False) -> dict[str, object]:
        record: dict[str, object] = {
            "rule": self.rule,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "commit": self.commit,
            "source": self.source,
            "decoded": self.decoded,
            "hint": self.hint,
            "fingerprint": self.fingerprint,
        }
        if with_live:
            record["live"] = self.live
        return record

    def __repr__(self) -> str:
        return f"Finding({self.rule}, {self.path}:{self.line}:{self.column}, {self.hint})"


class Scanned:
    """What a run looked at: every run states it, so 'clean' never means 'looked at nothing'."""

    __slots__ = ("files", "blobs", "bytes", "commits", "errors", "notes", "nothing_staged", "skipped")

    def __init__(self) -> None:
        self.files = 0
        self.blobs = 0
        self.bytes = 0
        self.commits = 0
        self.errors: list[str] = []  # inputs that could not be read (reported, exit 2 if all failed)
        self.notes: list[str] = []  # limits hit, things deliberately not scanned
        self.nothing_staged = False
        self.skipped = 0  # excluded by config globs

    def as_json(self) -> dict[str, int]:
        return {"files": self.files, "blobs": self.blobs, "bytes": self.bytes}


class Report:
    __slots__ = ("findings", "scanned", "suppressed", "verified")

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.scanned = Scanned()
        self.suppressed = {"allow": 0, "baseline": 0}
        self.verified = False
