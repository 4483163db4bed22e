"""The baseline: credentials a team has looked at and accepted (a revoked test key, a fixture),
stored as fingerprints and paths, never values.

Built so it does not churn in diffs: no line numbers, no timestamps, no tool version; entries
sorted by fingerprint, paths sorted, one path per line, so moving a key within a file, or
editing anything else, leaves the file byte-for-byte unchanged. A finding is covered when its
fingerprint is listed with its path (paths are relative to the baseline file's directory).

    {
      "version": 1,
      "credentials": [
        {
          "fingerprint": "3f0c...",
          "rule": "anthropic-api-key",
          "hint": "sk-ant-api03-R2D...igAA",
          "paths": ["tests/fixtures/revoked.env"]
        }
      ]
    }
"""

from __future__ import annotations

import json
import os

from keyvault.errors import KeyvaultError
from keyvault.scan.findings import RULES, Finding

VERSION = 1
_HEX = frozenset("0123456789abcdef")


class BaselineError(KeyvaultError):
    """The baseline file is missing or malformed: names the file and the entry."""


class Entry:
    __slots__ = ("fingerprint", "rule", "hint", "paths")

    def __init__(self, fingerprint: str, rule: str, hint: str, paths: set[str]) -> None:
        self.fingerprint = fingerprint
        self.rule = rule
        self.hint = hint
        self.paths = paths


class Baseline:
    __slots__ = ("path", "root", "entries")

    def __init__(self, path: str, entries: dict[str, Entry] | None = None) -> None:
        self.path = path
        self.root = os.path.dirname(os.path.abspath(path))
        self.entries = entries if entries is not None else {}

    def location(self, finding: Finding, cwd_root: str) -> str:
        """The finding's path relative to the baseline's directory. `cwd_root` is the
        directory the finding's path is relative to (the work tree top for git sources)."""
        if finding.path is None:
            return f"commit:{finding.commit}" if finding.commit else "-"
        member = ""
        path = finding.path
        if "!" in path:
            path, _, rest = path.partition("!")
            member = "!" + rest
        if finding.source == "stdin":
            return path + member
        full = os.path.normpath(os.path.join(cwd_root, path))
        rel = os.path.relpath(full, self.root).replace(os.sep, "/")
        return rel + member

    def covers(self, finding: Finding, cwd_root: str) -> bool:
        entry = self.entries.get(finding.fingerprint)
        return entry is not None and self.location(finding, cwd_root) in entry.paths

    def add(self, finding: Finding, cwd_root: str) -> None:
        entry = self.entries.get(finding.fingerprint)
        if entry is None:
            entry = self.entries[finding.fingerprint] = Entry(finding.fingerprint, finding.rule, finding.hint, set())
        entry.paths.add(self.location(finding, cwd_root))

    def dumps(self) -> str:
        credentials = []
        for fp in sorted(self.entries):
            e = self.entries[fp]
            credentials.append({"fingerprint": e.fingerprint, "rule": e.rule, "hint": e.hint,
                                "paths": sorted(e.paths)})
        return json.dumps({"version": VERSION, "credentials": credentials}, indent=2) + "\n"

    def save(self) -> None:
        """Atomic: a crash leaves the old baseline or the new one, never half a file."""
        text = self.dumps()
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise BaselineError(f"{self.path}: cannot write the baseline ({exc.strerror})") from None


def load(path: str) -> Baseline:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise BaselineError(f"{path}: baseline file not found (create it with: keyvault baseline create)") from None
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline ({exc.strerror})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(f"{path}: not a keyvault baseline (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("credentials"), list):
        raise BaselineError(f"{path}: not a keyvault baseline (expected {{\"version\": 1, \"credentials\": [...]}})")
    entries: dict[str, Entry] = {}
    for i, item in enumerate(doc["credentials"]):
        where = f"{path}: credentials[{i}]"
        if not isinstance(item, dict):
            raise BaselineError(f"{where} is not an object")
        fp = item.get("fingerprint")
        if not isinstance(fp, str) or len(fp) != 64 or not set(fp) <= _HEX:
            raise BaselineError(f"{where}: 'fingerprint' must be 64 lowercase hex characters (sha256)")
        paths = item.get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise BaselineError(f"{where}: 'paths' must be a list of paths")
        rule = item.get("rule", "")
        if rule and rule not in RULES:
            raise BaselineError(f"{where}: unknown rule {rule!r}")
        hint = item.get("hint", "")
        if not isinstance(hint, str) or len(hint) > 40:
            raise BaselineError(f"{where}: 'hint' must be a short redacted hint")
        entries[fp] = Entry(fp, rule, hint, set(paths))
    return Baseline(path, entries)
