"""`dotenv://PATH#NAME`: the key as `NAME=...` in a .env file (default NAME ANTHROPIC_API_KEY).

The file is parsed with python-dotenv, exactly as the app's `load_dotenv()` reads it (the last
definition of NAME wins; `${VAR}` references are not followed: a key never holds one).

Slots: the current key is `NAME`, a staged key is `NAME_PENDING`, the one it replaced is
`NAME_PREVIOUS`. New slot lines go right after `NAME` and copy its style (`export `, quotes).

Writes change only those lines: every other line, comment, blank line, quote style, `export `
prefix, line ending (LF/CRLF) and their order stay byte-identical. A write:
- refuses a file git tracks (`git ls-files --error-unmatch`): it would commit the key;
- refuses a symlink that points outside the project (the git work tree, or the link's own
  directory outside git) and a file owned by another user; a symlink inside the project is
  followed and stays a symlink;
- takes an exclusive lock (`<file>.keyvault-lock` beside it), re-reads the file, compares the
  current key's fingerprint with the one the caller planned against (compare-and-swap), then
  replaces the file atomically (temp file, fsync, rename, fsync dir) with mode 0600.

Version ids: a .env file has no versions, so a value's version id is derived from it:
`sha256:` + the first 12 hex digits of its fingerprint. `created` is None (not recorded).
Rotation state lives in `<file>.keyvault-state.json` beside the file (fingerprints and ids only),
with a random token per write for compare-and-swap.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keyvault.backends import Source, Version, VersionInfo
from keyvault.backends.env import DEFAULT_VAR, value_version
from keyvault.backends.localfs import atomic_write, check_state, check_writable, exclusive_lock, follow_link_within
from keyvault.errors import BackendError, ConflictError, NotFoundError, PermissionDeniedError, SourceError
from keyvault.keys import Secret
from keyvault.redact import redact

if TYPE_CHECKING:  # pragma: no cover
    import subprocess

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_VALUE_RE = re.compile(r"[A-Za-z0-9_-]+")
_NEWLINE_RE = re.compile(r"\r\n|\n|\r")
_LEADING_RE = re.compile(r"\s*")
_STATEMENT_RE = re.compile(
    r"(?P<export>export[^\S\r\n]+)?(?P<key>'[^']+'|[^=#\s]+)(?P<ws>[^\S\r\n]*)(?P<eq>=[^\S\r\n]*)"
    r"(?P<value>'(?:\\'|[^'])*'|\"(?:\\\"|[^\"])*\"|[^\r\n]*?)"
    r"(?P<rest>(?:[^\S\r\n]+#[^\r\n]*)?[^\S\r\n]*)(?P<eol>\r\n|\n|\r)?\Z"
)
STAGES = ("current", "pending", "previous")
STATE_FORMAT = "keyvault-state/1"


@dataclass
class _Entry:
    """One `KEY=value` binding of the file, as python-dotenv parsed it."""

    key: str | None
    value: str | None
    text: str  # the exact original text, including leading blank lines and the line ending
    line: int


@dataclass
class _Doc:
    entries: list[_Entry]
    newline: str

    def render(self) -> str:
        return "".join(e.text for e in self.entries)


def _parse(text: str) -> _Doc:
    from dotenv.parser import parse_stream

    entries = [
        _Entry(b.key, b.value, b.original.string, b.original.line) for b in parse_stream(io.StringIO(text))
    ]
    m = _NEWLINE_RE.search(text)
    return _Doc(entries, m.group(0) if m else "\n")


def _split(text: str) -> tuple[str, str]:
    """(blank lines and indentation before the statement, the statement with its line end)."""
    lead = _LEADING_RE.match(text)
    cut = lead.end() if lead else 0
    return text[:cut], text[cut:]


def _keep_lines(lead: str) -> str:
    """The whole blank lines of `lead` (the indentation after the last newline belongs to the
    statement being removed)."""
    last = None
    for last in _NEWLINE_RE.finditer(lead):
        pass
    return lead[: last.end()] if last else ""


class DotenvBackend:
    writable = True

    def __init__(self, source: Source) -> None:
        self.source = source
        if not source.location:
            raise SourceError(f"source {source}: no file path; expected dotenv://PATH#NAME, e.g. dotenv://.env")
        self.name = source.field or DEFAULT_VAR
        if not _NAME_RE.fullmatch(self.name):
            raise SourceError(
                f"source {source}: {redact(self.name)!r} is not a variable name (letters, digits, '_', not starting with a digit)"
            )
        self.path = Path(os.path.expanduser(source.location))
        self.names = {"current": self.name, "pending": f"{self.name}_PENDING", "previous": f"{self.name}_PREVIOUS"}

    # reading -----------------------------------------------------------------------------

    def _read_text(self, path: Path | None = None) -> str | None:
        path = path or self.path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise BackendError(f"{self.source}: {path} is a directory, not a .env file") from None
        except PermissionError:
            raise PermissionDeniedError(f"{self.source}: cannot read {path}: permission denied") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise BackendError(
                f"{self.source}: {path} line {line} is not valid UTF-8 (byte {exc.start + 1}); "
                "save the file as UTF-8"
            ) from None

    def _load(self) -> _Doc | None:
        text = self._read_text()
        return None if text is None else _parse(text)

    def _find(self, doc: _Doc, stage: str, *, for_write: bool = False) -> _Entry | None:
        name = self.names[stage]
        found = [e for e in doc.entries if e.key == name]
        if len(found) > 1 and for_write:
            lines = ", ".join(str(self._line_of(e)) for e in found)
            raise BackendError(
                f"{self.source}: {name} is defined {len(found)} times in {self.path} (lines {lines}); "
                "keep one definition so a rewrite cannot leave the wrong one in effect"
            )
        return found[-1] if found else None

    @staticmethod
    def _line_of(entry: _Entry) -> int:
        lead, _ = _split(entry.text)
        return entry.line + len(_NEWLINE_RE.findall(lead))

    def _value(self, entry: _Entry | None, stage: str) -> Secret | None:
        if entry is None:
            return None
        where = f"{self.path} line {self._line_of(entry)}"
        if entry.value is None or not entry.value.strip():
            if stage == "current":
                raise NotFoundError(
                    f"{self.source}: {self.names[stage]} has no value in {where}; "
                    f"fix: write {self.names[stage]}=<key> there"
                )
            return None
        if "${" in entry.value:
            raise BackendError(
                f"{self.source}: {self.names[stage]} in {where} refers to another variable (${{...}}); "
                "keyvault reads the key itself, not a reference: put the key there"
            )
        return Secret(entry.value)

    def _version(self, secret: Secret, stage: str) -> Version:
        return Version(secret=secret, version=value_version(secret), created=None, stage=stage)

    def read(self) -> Version:
        doc = self._load()
        if doc is None:
            raise NotFoundError(
                f"{self.source}: {self.path} does not exist; fix: create it with a line "
                f"{self.name}=<key>, or point the source at the right file"
            )
        secret = self._value(self._find(doc, "current"), "current")
        if secret is None:
            raise NotFoundError(
                f"{self.source}: {self.path} has no {self.name} line; fix: add {self.name}=<key>, "
                "or name the variable in the source (dotenv://PATH#NAME)"
            )
        return self._version(secret, "current")

    def read_pending(self) -> Version | None:
        doc = self._load()
        secret = None if doc is None else self._value(self._find(doc, "pending"), "pending")
        return None if secret is None else self._version(secret, "pending")

    def read_previous(self) -> Version | None:
        """The key the last promote replaced (`NAME_PREVIOUS`), kept for rollback."""
        doc = self._load()
        secret = None if doc is None else self._value(self._find(doc, "previous"), "previous")
        return None if secret is None else self._version(secret, "previous")

    def versions(self) -> list[VersionInfo]:
        doc = self._load()
        if doc is None:
            raise NotFoundError(f"{self.source}: {self.path} does not exist")
        out: list[VersionInfo] = []
        for stage in STAGES:
            secret = self._value(self._find(doc, stage), stage)
            if secret is not None:
                out.append(VersionInfo(value_version(secret), (stage,), None, secret.fingerprint))
        return out

    # the guards before any write -------------------------------------------------------

    def _git(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
        import subprocess  # writes only: reading a .env stays cheap at start-up

        try:
            return subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30,
                env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
            )
        except (FileNotFoundError, NotADirectoryError, subprocess.TimeoutExpired):
            return None

    @staticmethod
    def _in_git(directory: Path) -> bool:
        """Whether a git work tree may contain `directory` (cheap: no git process outside one)."""
        if os.environ.get("GIT_DIR") or os.environ.get("GIT_WORK_TREE"):
            return True
        for d in (directory, *directory.parents):
            if (d / ".git").exists():
                return True
        return False

    def _tracked(self, path: Path) -> bool:
        if not self._in_git(path.parent.resolve()):
            return False
        res = self._git(path.parent, "ls-files", "--error-unmatch", "--", path.name)
        return res is not None and res.returncode == 0

    def _target(self) -> Path:
        """The file a write replaces, after the guards: the path itself, or the in-project
        file a symlink points to."""
        path = self.path
        if path.is_symlink():
            top = self._git(path.parent, "rev-parse", "--show-toplevel")
            project = Path(top.stdout.strip()) if top is not None and top.returncode == 0 else path.parent
            path = follow_link_within(path, project, what=str(self.source), tree="the project",
                                      fix="write the file it points to directly, or replace the link")
        for candidate in {self.path, path}:
            if candidate.exists() and self._tracked(candidate):
                raise BackendError(
                    f"{self.source}: refusing to write the key into {candidate}: git tracks this file, "
                    "so it would commit the key; untrack it (git rm --cached "
                    f"{candidate.name}, then add it to .gitignore) or keep the key in another source"
                )
        check_writable(path, what=str(self.source))
        return path

    # writing ---------------------------------------------------------------------------

    def _slot_text(self, template: _Entry | None, name: str, value: str, newline: str, lead: str = "") -> str:
        """A `name=value` line in the style of `template` (the NAME line)."""
        if template is not None:
            _, stmt = _split(template.text)
            m = _STATEMENT_RE.match(stmt)
            if m:
                quoted = m["value"][:1] if m["value"][:1] in ("'", '"') else ""
                eol = m["eol"] or newline
                if template.key == name:  # the line itself: keep its comment and spacing
                    return f"{lead}{m['export'] or ''}{m['key']}{m['ws']}{m['eq']}{quoted}{value}{quoted}{m['rest']}{eol}"
                return f"{lead}{m['export'] or ''}{name}{m['ws']}{m['eq']}{quoted}{value}{quoted}{eol}"
            export = "export " if stmt.startswith("export") else ""
            return f"{lead}{export}{name}={value}{newline}"
        return f"{lead}{name}={value}{newline}"

    def _check_value(self, secret: Secret) -> str:
        value = secret.reveal()
        if not _VALUE_RE.fullmatch(value):
            raise BackendError(
                f"{self.source}: refusing to write {secret.hint}: a .env key value may hold only "
                "letters, digits, '_' and '-' (an Anthropic key does)"
            )
        return value

    def _set(self, doc: _Doc, stage: str, secret: Secret | None) -> None:
        """Set (or, with None, remove) one slot in place; new slots go after the NAME line."""
        name = self.names[stage]
        entry = self._find(doc, stage, for_write=True)
        current = self._find(doc, "current", for_write=True)
        if secret is None:
            if entry is not None:
                lead, _ = _split(entry.text)
                kept = _keep_lines(lead)
                if kept:
                    entry.text, entry.key, entry.value = kept, None, None
                else:
                    doc.entries.remove(entry)
            return
        value = self._check_value(secret)
        if entry is not None:
            lead, _ = _split(entry.text)
            entry.text = self._slot_text(entry, name, value, doc.newline, lead)
            entry.value = value
            return
        # a new line: after NAME (or after the last slot line, or at the end of the file)
        anchor = current
        for other in ("pending", "previous"):
            if anchor is None:
                anchor = self._find(doc, other, for_write=True)
        new = _Entry(name, value, self._slot_text(current, name, value, doc.newline), 0)
        if anchor is None:
            if doc.entries and not _NEWLINE_RE.search(doc.entries[-1].text[-2:] or "\n"):
                doc.entries[-1].text += doc.newline
            doc.entries.append(new)
            return
        if not _NEWLINE_RE.search(anchor.text[-2:]):
            anchor.text += doc.newline  # NAME was the last line, with no line end
        doc.entries.insert(doc.entries.index(anchor) + 1, new)

    def _write(self, doc: _Doc, target: Path) -> None:
        atomic_write(target, doc.render().encode("utf-8"), what=str(self.source))

    def _locked_doc(self) -> tuple[Path, _Doc]:
        target = self._target()
        text = self._read_text(target)
        return target, _parse(text or "")

    def _expect(self, doc: _Doc, expected_current: str, step: str) -> Secret | None:
        current = self._value(self._find(doc, "current", for_write=True), "current")
        actual = current.fingerprint if current is not None else ""
        if actual != expected_current:
            now = f"holds {current.hint}" if current is not None else "holds no key"
            raise ConflictError(
                f"{self.source}: cannot {step}: {self.name} changed since it was read "
                f"(it now {now}, fingerprint {actual[:12] or '-'}; expected {expected_current[:12] or 'no key'}); "
                "nothing was written; read it again and retry"
            )
        return current

    def stage(self, secret: Secret) -> Version:
        """Write NAME_PENDING; the same key again is a no-op. Another key is refused while one
        is staged (it may be the only copy of a key the Console showed once): clear it first."""
        self._check_value(secret)
        with exclusive_lock(self.path, what=str(self.source)):
            target, doc = self._locked_doc()
            pending = self._value(self._find(doc, "pending", for_write=True), "pending")
            if pending is not None:
                if pending == secret:
                    return self._version(pending, "pending")
                raise ConflictError(
                    f"{self.source}: another key ({pending.hint}) is already staged as {self.names['pending']}; "
                    "promote it, or clear it first if it is abandoned (it may be the only copy of a key shown once)"
                )
            self._set(doc, "pending", secret)
            self._write(doc, target)
        return self._version(secret, "pending")

    def clear_pending(self) -> None:
        with exclusive_lock(self.path, what=str(self.source)):
            if not self.path.exists():
                return
            target, doc = self._locked_doc()
            if self._find(doc, "pending", for_write=True) is None:
                return
            self._set(doc, "pending", None)
            self._write(doc, target)

    def promote(self, expected_current: str) -> Version:
        with exclusive_lock(self.path, what=str(self.source)):
            target, doc = self._locked_doc()
            current = self._expect(doc, expected_current, "promote the staged key")
            pending = self._value(self._find(doc, "pending", for_write=True), "pending")
            if pending is None:
                raise NotFoundError(
                    f"{self.source}: nothing to promote: {self.names['pending']} is not in {self.path}; stage a key first"
                )
            self._set(doc, "current", pending)
            if current is not None:
                self._set(doc, "previous", current)
            self._set(doc, "pending", None)
            self._write(doc, target)
        return self._version(pending, "current")

    def rollback(self, expected_current: str) -> Version:
        with exclusive_lock(self.path, what=str(self.source)):
            target, doc = self._locked_doc()
            current = self._expect(doc, expected_current, "roll back")
            previous = self._value(self._find(doc, "previous", for_write=True), "previous")
            if previous is None:
                raise NotFoundError(
                    f"{self.source}: nothing to roll back to: {self.names['previous']} is not in {self.path}"
                )
            self._set(doc, "current", previous)
            self._set(doc, "previous", current)
            self._write(doc, target)
        return self._version(previous, "current")

    # rotation state --------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}.keyvault-state.json")

    def read_state(self) -> tuple[dict[str, str] | None, str | None]:
        import json

        path = self.state_path
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        try:
            data = json.loads(raw)
            if data.get("format") != STATE_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            state, token = data["state"], data["token"]
            if not isinstance(state, dict) or not isinstance(token, str):
                raise ValueError("state is not an object")
        except (ValueError, KeyError, AttributeError) as exc:
            raise BackendError(
                f"{self.source}: the rotation state file {path} is damaged ({exc}); "
                "move it aside and run `keyvault status` to rebuild the plan"
            ) from None
        return {str(k): str(v) for k, v in state.items()}, token

    def write_state(self, state: dict[str, str], expected_token: str | None) -> str:
        import json
        import secrets

        check_state(state, str(self.source))
        with exclusive_lock(self.path, what=str(self.source)):
            _, token = self.read_state()
            if token != expected_token:
                raise ConflictError(
                    f"{self.source}: the rotation state changed since it was read (another rotator?); "
                    "nothing was written; read it again"
                )
            check_writable(self.state_path, what=str(self.source))
            new_token = secrets.token_hex(8)
            body = json.dumps({"format": STATE_FORMAT, "token": new_token, "state": state}, indent=2, sort_keys=True)
            atomic_write(self.state_path, (body + "\n").encode("utf-8"), what=str(self.source))
        return new_token

