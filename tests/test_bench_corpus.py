"""The benchmark corpus's planted cases mean what the manifest says (no download, no git).

bench/scan_bench.py scores every scanner against these expectations, so a planted "key" that
keyvault's own parser would reject, or a "near-miss" it would accept, would make the benchmark
lie. Each case is checked at the file and line the manifest records.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from keyvault.errors import KeyFormatError
from keyvault.keys import parse_key

ROOT = Path(__file__).resolve().parents[1]


def _corpus_module():
    spec = importlib.util.spec_from_file_location("bench_corpus", ROOT / "bench" / "corpus.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


corpus = _corpus_module()
PLANTS, CASES, STAGED = corpus.plan_cases(1)
FILES = {**{p: t for plant in PLANTS for p, t in plant.files.items()}, **STAGED}
MESSAGES = {cid: plant.message for plant in PLANTS for cid in plant.cases}


def _value_in(text: str, fingerprint: str) -> str | None:
    """The substring starting at an `sk-ant-` whose sha256 is the case's fingerprint."""
    for m in re.finditer("sk-ant-", text):
        for end in range(m.start() + 8, min(len(text), m.start() + 140) + 1):
            if hashlib.sha256(text[m.start():end].encode()).hexdigest() == fingerprint:
                return text[m.start():end]
    return None


def _decoded_lines(text: str) -> str:
    """Every base64-looking token of the text, decoded (for the base64 cases)."""
    out = []
    for token in re.findall(r"[A-Za-z0-9+/=]{40,}", text):
        try:
            out.append(base64.b64decode(token).decode())
        except ValueError:
            continue
    return "\n".join(out)


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "key"], ids=lambda c: c.id)
def test_planted_key_is_a_valid_key_of_its_family_at_its_line(case):
    if case.path is None:
        text = MESSAGES[case.id]
    else:
        text = FILES[case.path]
        assert case.line is not None
        text = text.splitlines()[case.line - 1]
    if case.form.startswith("base64"):
        assert "sk-ant-" not in text  # only the encoded form is in the file
        text = _decoded_lines(text)
    value = _value_in(text, case.fingerprint)
    assert value is not None, f"{case.id}: no value with the manifest's fingerprint at {case.path}:{case.line}"
    assert parse_key(value).family.name == case.family


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "near-miss"], ids=lambda c: c.id)
def test_near_miss_is_rejected_by_parse_key(case):
    text = FILES[case.path].splitlines()[case.line - 1]
    value = _value_in(text, case.fingerprint)
    assert value is not None, f"{case.id}: no value with the manifest's fingerprint at {case.path}:{case.line}"
    with pytest.raises(KeyFormatError):
        parse_key(value)


def test_cases_are_reproducible_and_distinct():
    again = corpus.plan_cases(1)[1]
    assert [c.fingerprint for c in again] == [c.fingerprint for c in CASES]
    assert len({c.fingerprint for c in CASES}) == len(CASES)
    assert corpus.plan_cases(2)[1][0].fingerprint != CASES[0].fingerprint
    # one file per case: a finding is attributed to its case by path
    paths = [c.path for c in CASES if c.path]
    assert len(paths) == len(set(paths))
