"""Find and hide credential values inside free text (messages, usage errors, tracebacks).

A value is `sk-ant-<word><nn>-` followed by 8 or more key characters: a hint
(`sk-ant-api03-R2D...igAA`) has 3 before its dots and is left alone. Standard library only.
"""

from __future__ import annotations

import re

from keyvault.keys import UNKNOWN, family_of, hint

MIN_BODY = 8  # key characters after the prefix that make a value rather than a hint
_VALUE_RE = re.compile(r"sk-ant-[a-z]{2,10}[0-9]{2}-[A-Za-z0-9_-]{%d,}" % MIN_BODY)


def credential_in(text: str) -> str | None:
    """The label of the first credential family whose value `text` holds, or None."""
    m = _VALUE_RE.search(text)
    if m is None:
        return None
    return (family_of(m.group(0)) or UNKNOWN).label


def redact(text: str) -> str:
    """`text` with every credential value replaced by its hint."""
    return _VALUE_RE.sub(lambda m: hint(m.group(0)), text)
