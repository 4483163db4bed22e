"""The staged changes: what `git commit` is about to record.

One `git diff --cached -U0` gives every added line with its line number in the new file
(through the hunk headers). The added lines of a file are scanned together, so a base64 value
wrapped over several added lines still decodes. Files git calls binary (archives, UTF-16
text, images) are read whole from the index and scanned whole, since a key in a zip or a
UTF-16 file never shows in a line diff. It works before the first commit (no HEAD), in
worktrees and submodules, and with the temporary index `git commit -a` / `git commit PATH`
set up (GIT_INDEX_FILE is inherited).
"""

from __future__ import annotations

from keyvault.scan import gitio


class StagedFile:
    """The added text of one staged file, and the new-file line number of each of its lines."""

    __slots__ = ("path", "data", "lines", "whole")

    def __init__(self, path: str, data: bytes, lines: list[int] | None, whole: bool) -> None:
        self.path = path
        self.data = data
        self.lines = lines  # line i (1-based) of data is line lines[i-1] of the file; None: whole
        self.whole = whole


def staged_files(cwd: str | None = None) -> list[StagedFile]:
    """Every staged file with added content. Empty list: nothing is staged."""
    _, out, _ = gitio.run(["diff", "--cached", "-U0", *gitio.DIFF_OPTS], cwd=cwd)
    files: list[StagedFile] = []
    binary: list[str] = []
    path: str | None = None
    pending_header: bytes | None = None
    added: list[bytes] = []
    numbers: list[int] = []
    line_no = 0

    def flush() -> None:
        if path is not None and added:
            files.append(StagedFile(path, b"\n".join(added), numbers[:], False))

    in_header = False
    for raw in out.split(b"\n"):
        if raw.startswith(b"diff --git "):
            flush()
            added, numbers = [], []
            path = None
            pending_header = raw[len(b"diff --git "):]
            in_header = True
            continue
        if raw.startswith(b"@@ "):
            in_header = False
            try:  # @@ -a,b +c,d @@
                line_no = int(raw.split(b" ")[2][1:].split(b",")[0])
            except (IndexError, ValueError):
                line_no = 0
            continue
        if in_header:
            if raw.startswith(b"+++ "):
                header = raw[4:]
                if not header.startswith(b'"') and header.endswith(b"\t"):
                    header = header[:-1]  # git marks names holding spaces with a trailing tab
                name = gitio.unquote_path(header)
                path = name[2:] if name.startswith("b/") else name
            elif raw.startswith(b"Binary files ") and pending_header is not None:
                whole = _header_path(pending_header)
                if whole is not None:
                    binary.append(whole)
            continue
        if raw.startswith(b"+") and path is not None:
            added.append(raw[1:])
            numbers.append(line_no)
            line_no += 1
    flush()
    if binary:
        files.extend(_index_blobs(binary, cwd))
    return files


def _header_path(rest: bytes) -> str | None:
    """The path in `diff --git a/X b/X` (without renames both sides are the same path)."""
    if rest.startswith(b'"'):
        end = rest.find(b'" ', 1)
        while end > 0 and rest[end - 1:end] == b"\\":
            end = rest.find(b'" ', end + 1)
        if end < 0:
            return None
        name = gitio.unquote_path(rest[:end + 1])
    else:
        half = (len(rest) - 1) // 2
        name = rest[:half].decode("utf-8", "surrogateescape")
    return name[2:] if name.startswith("a/") else name


def _index_blobs(paths: list[str], cwd: str | None) -> list[StagedFile]:
    """The staged content of whole files, through one `git cat-file --batch` (`:path` names
    the index entry)."""
    usable = [p for p in paths if "\n" not in p]
    request = b"".join(b":" + p.encode("utf-8", "surrogateescape") + b"\n" for p in usable)
    _, out, _ = gitio.run(["cat-file", "--batch"], cwd=cwd, stdin=request)
    files: list[StagedFile] = []
    pos = 0
    for p in usable:
        nl = out.find(b"\n", pos)
        if nl < 0:
            break
        header = out[pos:nl].split(b" ")
        if len(header) < 3 or header[-1] == b"missing":
            pos = nl + 1
            continue
        size = int(header[2])
        files.append(StagedFile(p, out[nl + 1:nl + 1 + size], None, True))
        pos = nl + 1 + size + 1
    return files
