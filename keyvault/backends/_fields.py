"""A key stored either as the whole secret string or as one field of a JSON object.

Cloud secret stores hold strings; teams often keep several values in one JSON secret
(`{"api_key": "...", "org": "..."}`). `#field` in the source URI names the field; writes
replace that field and keep every other field and its order.
Error messages name fields, never values.
"""

from __future__ import annotations

import json
from typing import Any

from keyvault.errors import BackendError, NotFoundError


def _object(text: str, where: str, field: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise BackendError(
            f"{where}: the secret is a plain string, not JSON, so it has no field {field!r}; "
            "remove '#" + field + "' from the source"
        ) from None
    if not isinstance(data, dict):
        raise BackendError(f"{where}: the secret is JSON but not an object, so it has no field {field!r}")
    return data


def _names(data: dict[str, Any]) -> str:
    return ", ".join(sorted(data)) or "none"


def extract(text: str, field: str | None, where: str) -> str:
    """The key inside a stored secret string."""
    if field is None:
        stripped = text.lstrip()
        if stripped.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict):
                raise BackendError(
                    f"{where}: the secret is a JSON object with fields {_names(data)}; "
                    "name the field holding the key, e.g. '#api_key' at the end of the source"
                )
        return text
    data = _object(text, where, field)
    if field not in data:
        raise NotFoundError(f"{where}: the JSON secret has no field {field!r} (fields: {_names(data)})")
    value = data[field]
    if not isinstance(value, str):
        raise BackendError(f"{where}: field {field!r} holds a {type(value).__name__}, not a string")
    return value


def compose(current: str | None, field: str | None, value: str, where: str) -> str:
    """The secret string with the key replaced: the whole string, or one field of the object."""
    if field is None:
        return value
    data = _object(current, where, field) if current is not None else {}
    data[field] = value
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def others(text: str, field: str | None) -> dict[str, Any]:
    """Every field but the key's (empty for plain strings): to notice concurrent edits."""
    if field is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if k != field} if isinstance(data, dict) else {}
