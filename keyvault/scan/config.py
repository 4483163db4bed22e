"""Scanner configuration: `[tool.keyvault.scan]` in pyproject.toml, or `[scan]` (or
`[tool.keyvault.scan]`) in keyvault.toml, found in the current directory or the nearest parent
up to the top of the git work tree.

    [tool.keyvault.scan]
    exclude = ["tests/fixtures/**", "*.min.js"]   # path globs; ** crosses directories
    baseline = ".keyvault-baseline.json"          # default: that file, when it exists
    verify = false                                # hooks only verify when this says so

TOML is parsed with `tomllib` (Python 3.11+), else `tomli` when installed; on 3.10 without
tomli a config file is a clear error rather than silently ignored. A pyproject.toml without a
`[tool.keyvault` table is not parsed at all (it costs the hook nothing).
"""

from __future__ import annotations

import os
import re
from typing import Any

from keyvault.errors import KeyvaultError

DEFAULT_BASELINE = ".keyvault-baseline.json"
_KEYS = {"exclude", "baseline", "verify"}


class ConfigError(KeyvaultError):
    """The configuration file is malformed: names the file and the setting."""


class Config:
    __slots__ = ("path", "root", "exclude", "baseline", "verify")

    def __init__(self, root: str, path: str | None = None) -> None:
        self.path = path  # the file it came from, None for defaults
        self.root = root  # the directory relative paths (globs, baseline) are taken from
        self.exclude: list[str] = []
        self.baseline: str | None = None
        self.verify = False

    def baseline_path(self) -> str | None:
        """The baseline file in effect: the configured one, else the default one if present."""
        if self.baseline is not None:
            return os.path.join(self.root, self.baseline)
        default = os.path.join(self.root, DEFAULT_BASELINE)
        return default if os.path.exists(default) else None


def _load_toml(path: str, data: bytes) -> dict[str, Any]:
    try:
        import tomllib as toml
    except ImportError:  # Python 3.10
        try:
            import tomli as toml  # type: ignore[no-redef]
        except ImportError:
            raise ConfigError(
                f"{path}: cannot read TOML on Python 3.10 without the 'tomli' package "
                "(pip install tomli), and this file configures keyvault"
            ) from None
    try:
        return toml.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def find_config(start: str = ".", explicit: str | None = None) -> Config:
    if explicit is not None:
        try:
            with open(explicit, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ConfigError(f"{explicit}: cannot read the config file ({exc.strerror})") from None
        return _parse(explicit, data, os.path.dirname(os.path.abspath(explicit)))
    here = os.path.abspath(start)
    while True:
        for name in ("keyvault.toml", "pyproject.toml"):
            candidate = os.path.join(here, name)
            try:
                with open(candidate, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if name == "pyproject.toml" and b"tool.keyvault" not in data:
                continue
            cfg = _parse(candidate, data, here)
            if cfg is not None:
                return cfg
        if os.path.exists(os.path.join(here, ".git")):
            break
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    root = here if os.path.exists(os.path.join(here, ".git")) else os.path.abspath(start)
    return Config(root)


def _parse(path: str, data: bytes, root: str) -> Config:
    doc = _load_toml(path, data)
    table: Any = doc.get("tool", {}).get("keyvault", {}).get("scan")
    if table is None and os.path.basename(path) == "keyvault.toml":
        table = doc.get("scan")
    cfg = Config(root, path)
    if table is None:
        return cfg
    where = f"{path}: [tool.keyvault.scan]" if "tool" in doc else f"{path}: [scan]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}; known: {', '.join(sorted(_KEYS))}")
    exclude = table.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(g, str) and g for g in exclude):
        raise ConfigError(f"{where}: 'exclude' must be a list of path globs, e.g. [\"tests/fixtures/**\"]")
    cfg.exclude = list(exclude)
    baseline = table.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        raise ConfigError(f"{where}: 'baseline' must be a file path, e.g. \".keyvault-baseline.json\"")
    cfg.baseline = baseline
    verify = table.get("verify", False)
    if not isinstance(verify, bool):
        raise ConfigError(f"{where}: 'verify' must be true or false")
    cfg.verify = verify
    return cfg


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: `*` and `?` stay inside one directory, `**` crosses them,
    a pattern without `/` matches the name at any depth (as in .gitignore), and a pattern
    naming a directory matches everything under it."""
    pat = pattern.strip()
    anchored = "/" in pat.rstrip("/")
    pat = pat.lstrip("/")
    if pat.endswith("/"):
        pat += "**"
    i = 0
    out = []
    while i < len(pat):
        c = pat[i]
        if c == "*":
            if pat.startswith("**", i):
                i += 2
                if pat.startswith("/", i):
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pat.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pat[i + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    body = "".join(out)
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{body}(?:/.*)?$")


class Excluder:
    __slots__ = ("patterns",)

    def __init__(self, globs: list[str]) -> None:
        self.patterns = [glob_regex(g) for g in globs]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        p = path.replace(os.sep, "/")
        if p.startswith("./"):
            p = p[2:]
        return any(r.match(p) for r in self.patterns)
