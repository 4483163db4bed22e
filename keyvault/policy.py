"""Rotation policy: `policies/rotation.toml` -> a typed `Policy`.

A policy says how old a key may get, how long the old key stays active after the new one is
deployed (grace), when a deactivated key is archived, what new keys are called in the Console,
and, per environment, which targets hold the key in what order. The first target of an
environment is its primary: it holds the pending slot for the new key and the rotation journal.

Every error names the file, the line, the key and what was expected: a policy is edited by
hand and read by a scheduled job nobody watches, so a vague message costs a missed rotation.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from keyvault.errors import KeyvaultError
from keyvault.redact import credential_in, redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class PolicyError(KeyvaultError):
    """The policy file is missing, malformed, or says something that cannot work.

    Its message is redacted on the way in: whoever quotes a setting, a key pasted into it shows
    as its hint only (library callers such as a Lambda handler log `str(error)` unredacted)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


DEFAULT_MAX_AGE_DAYS = 90
DEFAULT_WARN_DAYS = 14
DEFAULT_GRACE = timedelta(hours=24)
DEFAULT_ARCHIVE_DELAY = timedelta(days=30)
DEFAULT_TEMPLATE = "{env}-{app}-{date}"
DEFAULT_ADMIN_KEY = "env://ANTHROPIC_ADMIN_KEY"
DEFAULT_CHECK_TIMEOUT = timedelta(seconds=120)
DEFAULT_CHECK_ENV = "ANTHROPIC_API_KEY"
# Longer than any rotation could want, short enough that timedelta and date arithmetic on it
# (deadlines in the journal) cannot overflow.
MAX_DURATION = timedelta(days=3650)
TEMPLATE_FIELDS = ("env", "app", "date", "month", "workspace")
# Where `keyvault rotate` looks when --policy is not given (first hit wins).
SEARCH_PATHS = ("rotation.toml", "policies/rotation.toml")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_TOP_KEYS = {"rotation", "environments"}
_ROTATION_KEYS = {
    "app", "max_age_days", "warn_days", "grace", "archive_delay", "workspace_id",
    "name_template", "admin_key", "base_url", "webhook_url",
}
_ENV_KEYS = {"targets", "workspace_id", "admin_key", "app"}
_TARGET_KEYS = {"source", "check", "check_timeout", "check_env"}


@dataclass(frozen=True)
class Target:
    """One place the key lives, and how to prove the app behind it works with a new key."""

    source: str  # a source URI (keyvault.backends)
    check: str | None = None  # shell command run after the update; must exit 0
    check_timeout: timedelta = DEFAULT_CHECK_TIMEOUT
    check_env: str = DEFAULT_CHECK_ENV  # variable the check command receives the key in
    line: int | None = None  # where the policy names it, for messages


@dataclass(frozen=True)
class Environment:
    name: str
    targets: tuple[Target, ...]
    workspace_id: str | None = None
    admin_key: str | None = None
    app: str = "app"

    @property
    def primary(self) -> Target:
        return self.targets[0]


@dataclass(frozen=True)
class Policy:
    path: Path | None
    app: str = "app"
    max_age_days: int = DEFAULT_MAX_AGE_DAYS
    warn_days: int = DEFAULT_WARN_DAYS
    grace: timedelta = DEFAULT_GRACE
    archive_delay: timedelta = DEFAULT_ARCHIVE_DELAY
    workspace_id: str | None = None
    name_template: str = DEFAULT_TEMPLATE
    admin_key: str | None = DEFAULT_ADMIN_KEY
    base_url: str | None = None
    webhook_url: str | None = None  # notifications; KEYVAULT_WEBHOOK_URL wins over it
    environments: dict[str, Environment] = field(default_factory=dict)

    def environment(self, name: str | None = None) -> Environment:
        """The named environment; without a name, the only one (several need --env)."""
        names = ", ".join(self.environments) or "none"
        if name is None:
            if len(self.environments) == 1:
                return next(iter(self.environments.values()))
            raise PolicyError(f"{self._where()}: several environments ({names}); choose one with --env NAME")
        try:
            return self.environments[name]
        except KeyError:
            raise PolicyError(f"{self._where()}: no environment {_show(name)}; the policy defines: {names}") from None

    def key_name(self, env: Environment, today: date | None = None) -> str:
        """The name to give the new key in the Console (`prod-chat-2026-11-22`)."""
        today = today or date.today()
        return self.name_template.format(
            env=env.name,
            app=env.app,
            date=today.isoformat(),
            month=today.strftime("%Y-%m"),
            workspace=env.workspace_id or "default",
        )

    def _where(self) -> str:
        return str(self.path) if self.path else "policy"


def parse_duration(value: object, where: str) -> timedelta:
    """`"24h"`, `"30d"`, `"90m"`, `"2w"`, `"45s"` or a number of seconds, at most MAX_DURATION."""
    if isinstance(value, bool):
        raise PolicyError(f"{where}: expected a duration like \"24h\", \"30d\" or a number of seconds, got {_show(value)}")
    if isinstance(value, (int, float)):
        number, unit = value, None
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise PolicyError(
                f"{where}: {_show(value)} is not a duration; expected a number with a unit s, m, h, d or w "
                "(\"24h\", \"30d\")"
            )
        number, unit = float(m.group(1)), m.group(2)
    else:
        raise PolicyError(f"{where}: expected a duration like \"24h\" or \"30d\", got a {_kind(value)}")
    try:
        seconds = float(number) * _UNIT_SECONDS[unit]
    except OverflowError:  # an integer too large for a float
        seconds = math.inf
    if math.isnan(seconds):
        raise PolicyError(f"{where}: expected a duration like \"24h\" or \"30d\", got nan")
    if seconds < 0:
        raise PolicyError(f"{where}: a duration cannot be negative")
    if seconds > MAX_DURATION.total_seconds():
        # inf lands here too; timedelta() would raise OverflowError on it or on anything huge
        raise PolicyError(
            f"{where}: {_show(value)} is too long; a duration can be at most {format_duration(MAX_DURATION)}"
        )
    return timedelta(seconds=seconds)


def _show(value: object) -> str:
    """A value as an error message quotes it: a key pasted there shows as its hint only (the
    message goes into an unattended job's log)."""
    return redact(repr(value))


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class _Lines:
    """Find the line a dotted key is written on: tomllib reports positions only for syntax
    errors, and "line 12: grace" beats "rotation.grace" when the file is long."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_.\"'-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.entries: list[tuple[str, int]] = []  # (dotted key, line)
        table = ""
        for number, raw in enumerate(text.splitlines(), 1):
            header = self._HEADER.match(raw)
            if header:
                table = self._norm(header.group(1))
                self.entries.append((table, number))
                continue
            key = self._KEY.match(raw)
            if key:
                name = self._norm(key.group(1))
                self.entries.append((f"{table}.{name}" if table else name, number))

    @staticmethod
    def _norm(dotted: str) -> str:
        return ".".join(part.strip().strip("\"'") for part in dotted.split("."))

    def line(self, dotted: str) -> int | None:
        """The line of `dotted`, else of its closest written parent."""
        parts = dotted.split(".")
        while parts:
            wanted = ".".join(parts)
            for name, number in self.entries:
                if name == wanted:
                    return number
            parts.pop()
        return None

    def nth_table(self, dotted: str, index: int) -> int | None:
        """Line of the index-th `[[dotted]]` array-of-tables header."""
        hits = [number for name, number in self.entries if name == dotted]
        return hits[index] if index < len(hits) else None


class _Reader:
    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def where(self, dotted: str, line: int | None = None) -> str:
        line = line if line is not None else self.lines.line(dotted)
        name = str(self.path) if self.path else "policy"
        return f"{name}, line {line}: {dotted}" if line else f"{name}: {dotted}"

    def table(self, data: dict[str, Any], key: str, dotted: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise PolicyError(f"{self.where(dotted)}: expected a table [{dotted}], got a {_kind(value)}")
        return value

    def unknown(self, data: dict[str, Any], allowed: set[str], dotted: str) -> None:
        for key in data:
            if key not in allowed:
                near = _closest(key, allowed)
                hint = f"; did you mean {near!r}?" if near else f"; expected one of: {', '.join(sorted(allowed))}"
                full = f"{dotted}.{key}" if dotted else key
                raise PolicyError(f"{self.where(full)}: unknown setting {_show(key)}{hint}")

    def string(self, data: dict[str, Any], key: str, dotted: str, default: str | None) -> str | None:
        value = data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise PolicyError(f"{self.where(dotted)}: expected a string, got a {_kind(value)} ({_show(value)})")
        return value

    def integer(self, data: dict[str, Any], key: str, dotted: str, default: int, low: int, high: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(f"{self.where(dotted)}: expected a whole number of days, got a {_kind(value)} ({_show(value)})")
        if not low <= value <= high:
            raise PolicyError(f"{self.where(dotted)}: {value} is out of range; expected {low} to {high}")
        return value

    def duration(self, data: dict[str, Any], key: str, dotted: str, default: timedelta) -> timedelta:
        if key not in data:
            return default
        return parse_duration(data[key], self.where(dotted))


def _kind(value: object) -> str:
    return {
        bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "table"
    }.get(type(value), type(value).__name__)


def _closest(word: str, options: set[str]) -> str | None:
    import difflib

    hits = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return hits[0] if hits else None


def _check_source(uri: str, where: str) -> None:
    from keyvault.backends import parse_source
    from keyvault.errors import SourceError

    try:
        parse_source(uri)
    except SourceError as exc:
        raise PolicyError(f"{where}: {redact(str(exc))}") from None


def _check_template(template: str, where: str) -> None:
    import string

    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise PolicyError(f"{where}: {_show(template)} is not a valid template ({redact(str(exc))})") from None
    for name in names:
        if name not in TEMPLATE_FIELDS:
            fields = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise PolicyError(f"{where}: unknown field {{{name}}} in {_show(template)}; expected only {fields}")


def _check_admin(uri: str | None, where: str) -> None:
    if uri is None or uri == "":
        return
    if uri.startswith("sk-ant-"):
        raise PolicyError(
            f"{where}: this is a key, not a source; a policy file must never hold a key value. "
            "Name where the admin key lives instead, e.g. \"env://ANTHROPIC_ADMIN_KEY\""
        )
    _check_source(uri, where)


_NO_KEYS = (
    "a policy file must never hold a key value (it is committed and printed in job logs): name "
    "the source that holds the key instead (e.g. \"vault://secret/apps/chat#api_key\"), and "
    "treat this key as exposed: rotate it"
)


def _refuse_credentials(text: str, name: str) -> None:
    """Refuse a key value anywhere in the text, comments included, before anything quotes it.

    Checked on the raw text first so the message can name the line, whatever the setting.
    """
    if credential_in(text) is None:  # one linear pass; the per-line search only on a hit
        return
    for number, line in enumerate(text.splitlines(), 1):
        label = credential_in(line)
        if label is not None:
            raise PolicyError(f"{name}, line {number}: holds the value of {_a(label)}; {_NO_KEYS}")
    raise PolicyError(f"{name}: holds the value of a key; {_NO_KEYS}")


def _refuse_decoded_credentials(reader: _Reader, data: object, dotted: str = "") -> None:
    """The same on the parsed values: a TOML escape (\\u0073k-ant-...) hides a key from the raw
    text but not from the setting that receives it."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        path = f"{dotted}[{key}]" if isinstance(key, int) else f"{dotted}.{key}" if dotted else key
        for text in (key, value):
            label = credential_in(text) if isinstance(text, str) else None
            if label is not None:
                raise PolicyError(f"{reader.where(path)}: holds the value of {_a(label)}; {_NO_KEYS}")
        _refuse_decoded_credentials(reader, value, path)


def _a(label: str) -> str:
    return f"{'an' if label[:1] in tuple('aeiouAEIOU') else 'a'} {label}"


def _check_webhook(url: str, where: str) -> None:
    """Like keyvault.notify's own check, worded for the policy; never quotes the URL (a
    Slack-style webhook path is itself a credential)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise PolicyError(f"{where}: not a valid URL; expected https://host/path") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(f"{where}: expected an http(s) URL with a host, such as https://hooks.example.com/keyvault")
    if parts.username or parts.password:
        raise PolicyError(
            f"{where}: a webhook URL must not carry credentials; set KEYVAULT_WEBHOOK_SECRET to sign deliveries instead"
        )


def _targets(reader: _Reader, env_name: str, raw: object) -> tuple[Target, ...]:
    dotted = f"environments.{env_name}.targets"
    if raw is None:
        raise PolicyError(f"{reader.where(f'environments.{env_name}')}: missing 'targets': list the sources that hold the key, primary first")
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{reader.where(dotted)}: expected a non-empty list of source URIs or tables, got {_kind(raw)}")
    targets: list[Target] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        line = reader.lines.nth_table(dotted, index) if isinstance(item, dict) else reader.lines.line(dotted)
        where = reader.where(f"{dotted}[{index}]", line)
        if isinstance(item, str):
            item = {"source": item}
        if not isinstance(item, dict):
            raise PolicyError(f"{where}: expected a source URI string or a table with 'source', got a {_kind(item)}")
        for key in item:
            if key not in _TARGET_KEYS:
                near = _closest(key, _TARGET_KEYS)
                hint = f"; did you mean {near!r}?" if near else f"; expected: {', '.join(sorted(_TARGET_KEYS))}"
                raise PolicyError(f"{where}: unknown setting {_show(key)}{hint}")
        source = item.get("source")
        if not isinstance(source, str) or not source:
            raise PolicyError(f"{where}: missing 'source' (a URI such as \"vault://secret/apps/chat#api_key\")")
        if source.startswith("sk-ant-"):
            raise PolicyError(f"{where}: this is a key, not a source; a policy file must never hold a key value")
        _check_source(source, where)
        if source.split("://", 1)[0].lower() == "env":
            raise PolicyError(
                f"{where}: {source} cannot be a rotation target: a process environment cannot be "
                "written from outside; rotate the store the variable is filled from"
            )
        if source in seen:
            raise PolicyError(f"{where}: {source} is listed twice (also at position {seen[source] + 1})")
        seen[source] = index
        check = item.get("check")
        if check is not None and (not isinstance(check, str) or not check.strip()):
            raise PolicyError(f"{where}.check: expected a shell command string, got {_show(check)}")
        timeout = parse_duration(item["check_timeout"], f"{where}.check_timeout") if "check_timeout" in item else DEFAULT_CHECK_TIMEOUT
        if timeout.total_seconds() <= 0:
            raise PolicyError(f"{where}.check_timeout: must be more than 0 seconds")
        check_env = item.get("check_env", DEFAULT_CHECK_ENV)
        if not isinstance(check_env, str) or not _VAR_RE.match(check_env):
            raise PolicyError(f"{where}.check_env: expected an environment variable name, got {_show(check_env)}")
        targets.append(Target(source, check, timeout, check_env, line))
    return tuple(targets)


def parse_policy(text: str, path: Path | None = None) -> Policy:
    """Parse a policy's text; `path` only names the file in messages."""
    name = str(path) if path else "policy"
    _refuse_credentials(text, name)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)": keep it, put the file first.
        raise PolicyError(f"{name}: not valid TOML: {redact(str(exc))}") from None
    reader = _Reader(path, text)
    _refuse_decoded_credentials(reader, data)
    reader.unknown(data, _TOP_KEYS, "")
    rot = reader.table(data, "rotation", "rotation")
    reader.unknown(rot, _ROTATION_KEYS, "rotation")
    app = reader.string(rot, "app", "rotation.app", "app") or "app"
    max_age = reader.integer(rot, "max_age_days", "rotation.max_age_days", DEFAULT_MAX_AGE_DAYS, 1, 3650)
    warn = reader.integer(rot, "warn_days", "rotation.warn_days", min(DEFAULT_WARN_DAYS, max_age - 1), 0, 3650)
    if warn >= max_age:
        raise PolicyError(
            f"{reader.where('rotation.warn_days')}: warn_days ({warn}) must be less than max_age_days ({max_age})"
        )
    grace = reader.duration(rot, "grace", "rotation.grace", DEFAULT_GRACE)
    archive_delay = reader.duration(rot, "archive_delay", "rotation.archive_delay", DEFAULT_ARCHIVE_DELAY)
    if grace >= timedelta(days=max_age):
        raise PolicyError(f"{reader.where('rotation.grace')}: the grace period must be shorter than max_age_days")
    workspace = reader.string(rot, "workspace_id", "rotation.workspace_id", None) or None
    template = reader.string(rot, "name_template", "rotation.name_template", DEFAULT_TEMPLATE) or DEFAULT_TEMPLATE
    _check_template(template, reader.where("rotation.name_template"))
    admin = reader.string(rot, "admin_key", "rotation.admin_key", DEFAULT_ADMIN_KEY) or None
    _check_admin(admin, reader.where("rotation.admin_key"))
    base_url = reader.string(rot, "base_url", "rotation.base_url", None) or None
    if base_url is not None and not re.match(r"^https?://[^\s/]+", base_url):
        raise PolicyError(f"{reader.where('rotation.base_url')}: expected an http(s) URL, got {_show(base_url)}")
    webhook_url = (reader.string(rot, "webhook_url", "rotation.webhook_url", None) or "").strip() or None
    if webhook_url is not None:
        _check_webhook(webhook_url, reader.where("rotation.webhook_url"))

    envs_raw = reader.table(data, "environments", "environments")
    if not envs_raw:
        raise PolicyError(
            f"{name}: no [environments.NAME] table; define at least one, e.g.\n"
            "  [environments.prod]\n  targets = [\"dotenv://.env#ANTHROPIC_API_KEY\"]"
        )
    environments: dict[str, Environment] = {}
    for env_name, env_raw in envs_raw.items():
        dotted = f"environments.{env_name}"
        if not _ENV_NAME_RE.match(env_name):
            raise PolicyError(f"{reader.where(dotted)}: environment name {_show(env_name)} must be letters, digits, '_', '.', '-'")
        if not isinstance(env_raw, dict):
            raise PolicyError(f"{reader.where(dotted)}: expected a table [{dotted}], got a {_kind(env_raw)}")
        reader.unknown(env_raw, _ENV_KEYS, dotted)
        env_ws = reader.string(env_raw, "workspace_id", f"{dotted}.workspace_id", workspace) or None
        env_admin = reader.string(env_raw, "admin_key", f"{dotted}.admin_key", admin) or None
        _check_admin(env_admin, reader.where(f"{dotted}.admin_key"))
        env_app = reader.string(env_raw, "app", f"{dotted}.app", app) or app
        targets = _targets(reader, env_name, env_raw.get("targets"))
        environments[env_name] = Environment(env_name, targets, env_ws, env_admin, env_app)
    return Policy(
        path=path, app=app, max_age_days=max_age, warn_days=warn, grace=grace,
        archive_delay=archive_delay, workspace_id=workspace, name_template=template,
        admin_key=admin, base_url=base_url, webhook_url=webhook_url, environments=environments,
    )


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Read a policy file; without a path, $KEYVAULT_POLICY or the first of SEARCH_PATHS."""
    if path is None:
        env = os.environ.get("KEYVAULT_POLICY")
        if env:
            path = env
        else:
            for candidate in SEARCH_PATHS:
                if Path(candidate).is_file():
                    path = candidate
                    break
            else:
                raise PolicyError(
                    "no rotation policy found: pass --policy FILE or set KEYVAULT_POLICY "
                    f"(looked for {', '.join(SEARCH_PATHS)} in {Path.cwd()})"
                )
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{p}: policy file not found") from None
    except IsADirectoryError:
        raise PolicyError(f"{p}: is a directory; expected a TOML policy file") from None
    except PermissionError:
        raise PolicyError(f"{p}: cannot read the policy file (permission denied)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{p}: not UTF-8 text (byte {exc.start + 1})") from None
    return parse_policy(text.lstrip("\ufeff"), p)


def single_target_policy(source: str, **settings: Any) -> Policy:
    """A policy for one ad-hoc target (`keyvault stage --target URI`)."""
    _check_source(source, "target")
    env = Environment("default", (Target(source),), settings.get("workspace_id"), settings.get("admin_key"))
    return Policy(path=None, environments={"default": env}, **settings)
