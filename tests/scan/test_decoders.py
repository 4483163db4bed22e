"""Decoders: base64 at every alignment and in every dress, UTF-16, gzip, bzip2, xz, zip members;
and the bounds that keep bombs and adversarial input linear."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import time
import urllib.parse
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyvault.keys import ADMIN
from keyvault.scan import decode
from keyvault.scan.engine import scan_bytes
from tests.scan.helpers import key


def hits(data: bytes) -> list[tuple[str, str | None, str, int | None]]:
    return [(h.secret.reveal(), h.chain, h.member, h.line) for h in scan_bytes(data)]


@pytest.mark.parametrize("lead", ["", "a", "ab", "abc", "KEY=", "user:"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode,
                                    lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")])
def test_base64_any_alignment_any_alphabet(lead: str, encode) -> None:
    k = key()
    blob = encode((lead + k + "\n").encode())
    assert hits(b"value: " + blob + b"\n") == [(k, "base64", "", 1)]


def test_k8s_secret_data_value() -> None:
    k, a = key(), key(ADMIN)
    manifest = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: anthropic\ntype: Opaque\ndata:\n"
        f"  ANTHROPIC_API_KEY: {base64.b64encode(k.encode()).decode()}\n"
        f"  ANTHROPIC_ADMIN_KEY: {base64.b64encode(a.encode()).decode()}\n"
    )
    assert hits(manifest.encode()) == [(k, "base64", "", 7), (a, "base64", "", 8)]


def test_base64_wrapped_at_76_and_in_escaped_json() -> None:
    k = key()
    payload = ("# config\n" * 5 + f"ANTHROPIC_API_KEY={k}\n").encode()
    wrapped = base64.encodebytes(payload)  # 76-character lines
    assert [h[0] for h in hits(wrapped)] == [k]
    assert [h[0] for h in hits(json.dumps({"blob": wrapped.decode()}).encode())] == [k]
    php = json.dumps({"blob": base64.b64encode(payload).decode()}).replace("/", "\\/")
    assert [h[0] for h in hits(php.encode())] == [k]


def test_base64_percent_encoded_in_a_url() -> None:
    k = key()
    for lead in ("", "?", "??"):
        b64 = base64.b64encode((lead + "\xff\xfe" + k).encode("latin-1"))
        url = "https://example.invalid/cb?state=" + urllib.parse.quote(b64.decode(), safe="")
        assert k in [h[0] for h in hits(url.encode())]


def test_basic_auth_header() -> None:
    k = key()
    header = "Authorization: Basic " + base64.b64encode(f"user:{k}".encode()).decode()
    assert hits(header.encode()) == [(k, "base64", "", 1)]


def test_base64_of_an_image_is_not_decoded_wholesale() -> None:
    blob = base64.b64encode(bytes(range(256)) * 4000)
    start = time.perf_counter()
    assert hits(b"data:image/png;base64," + blob) == []
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_files(encoding: str) -> None:
    k = key()
    text = f"[settings]\r\nname = demo\r\nkey = {k}\r\n"
    assert hits(text.encode(encoding)) == [(k, "utf-16", "", 3)]


def test_utf16_strings_inside_a_binary() -> None:
    k = key()
    blob = b"MZ\x90\x00" + bytes(range(256)) + ("\x00key " + k + "\x00").encode("utf-16-le") + b"\x00\xff"
    found = scan_bytes(blob)
    assert [(h.secret.reveal(), h.chain, h.line) for h in found] == [(k, "utf-16", None)]


def test_raw_key_in_a_binary_is_found() -> None:
    k = key()
    blob = bytes(range(256)) + k.encode() + b"\x00" + bytes(range(256))
    assert [(h.secret.reveal(), h.line, h.offset) for h in scan_bytes(blob)] == [(k, None, 256)]


def test_gzip_bzip2_xz_logs() -> None:
    k = key()
    log = ("INFO start\n" * 100 + f"DEBUG using key {k}\n").encode()
    assert hits(gzip.compress(log)) == [(k, "gzip", "", 101)]
    assert hits(bz2.compress(log)) == [(k, "bzip2", "", 101)]
    assert hits(lzma.compress(log)) == [(k, "xz", "", 101)]
    assert hits(gzip.compress(b"first member\n") + gzip.compress(log)) == [(k, "gzip", "", 102)]


def _zip(members: dict[str, bytes]) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return bio.getvalue()


def test_zip_jar_wheel_docx_members_and_nesting() -> None:
    k, a = key(), key(ADMIN)
    inner_jar = _zip({"META-INF/MANIFEST.MF": b"x", "app.properties": f"\nanthropic.key={k}\n".encode()})
    war = _zip({"WEB-INF/lib/app.jar": inner_jar, "logs/old.log.gz": gzip.compress(a.encode()),
                "word/document.xml": b"<w:t>no key</w:t>"})
    assert sorted(hits(war)) == sorted([
        (k, "zip>zip", "!WEB-INF/lib/app.jar!app.properties", 2),
        (a, "zip>gzip", "!logs/old.log.gz", 1),
    ])


def test_k8s_secret_inside_a_zip_and_base64() -> None:
    k = key()
    yaml = f"data:\n  key: {base64.b64encode(k.encode()).decode()}\n".encode()
    assert hits(_zip({"deploy/secret.yaml": yaml})) == [(k, "zip>base64", "!deploy/secret.yaml", 2)]


def test_gzip_bomb_is_cut_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "MAX_MEMBER_BYTES", 1 << 20)
    bomb = gzip.compress(b"\0" * (8 << 20))
    budget = decode.Budget()
    start = time.perf_counter()
    assert scan_bytes(bomb, None, budget) == []
    assert time.perf_counter() - start < 2
    assert any("cut at" in n for n in budget.notes)


def test_zip_bomb_total_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "MAX_MEMBER_BYTES", 1 << 20)
    members = {f"m{i}.bin": b"\0" * (2 << 20) for i in range(20)}
    budget = decode.Budget(total=4 << 20)
    assert scan_bytes(_zip(members), None, budget) == []
    assert budget.left == 0
    assert budget.notes


def test_damaged_archives_are_scanned_as_far_as_possible() -> None:
    k = key()
    gz = gzip.compress((k + "\n" + "x" * 5000).encode())
    assert [h[0] for h in hits(gz[: len(gz) // 2])] in ([k], [])  # truncated: no exception
    assert hits(b"PK\x03\x04" + b"\0" * 100 + k.encode()) == [(k, None, "", None)]


def test_nested_decoders_stop_at_the_depth_limit() -> None:
    k = key()
    data = k.encode()
    for _ in range(decode.MAX_DEPTH + 3):
        data = gzip.compress(data)
    assert hits(data) == []  # deeper than the limit: not decoded, no crash


def test_single_line_scales_linearly() -> None:
    """A long single line (minified JS, a log without newlines) costs linear time: time 8 MB
    against 1 MB of adversarial text (dense `sk-ant-` and base64 forms, no newline)."""
    unit = ("sk-" + "ant-api03-" + "Ab1_" * 10 + " c2stYW50LWFw NrLWFudC zay1hbnQt " + "x" * 40).encode()

    def timed(size: int) -> float:
        data = unit * (size // len(unit))
        start = time.perf_counter()
        scan_bytes(data)
        return time.perf_counter() - start

    timed(1 << 20)
    small = min(timed(1 << 20) for _ in range(2))
    big = timed(8 << 20)
    assert big < small * 8 * 2.5, (small, big)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_decoders_never_raise(data: bytes) -> None:
    for prefix in (b"\x1f\x8b\x08\x00", b"PK\x03\x04", b"BZh91AY&SY", b"\xfd7zXZ\x00", b"\xff\xfe", b"\xfe\xff"):
        scan_bytes(prefix + data)
    decode.base64_window(data, 0)
    decode.base64_window(data, -3)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_\\n%2BF", max_size=1500))
def test_fuzz_base64_soup_never_raises(text: str) -> None:
    scan_bytes(("c2stYW50L" + text).encode())
    scan_bytes(("xNrLWFudC" + text).encode())
    scan_bytes(("xyzay1hbnQt" + text).encode())


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=20000))
def test_fuzz_long(data: bytes) -> None:
    scan_bytes(data)
    scan_bytes(gzip.compress(data))
    scan_bytes(base64.b64encode(data))


@pytest.mark.slow
def test_100_mb_single_line_file_through_the_cli(tmp_path) -> None:
    from tests.scan.helpers import run_scan

    k = key()
    chunk = ("a" * 60 + " sk-" + "ant-api03-short " + "c2stYW50L" + "b" * 40 + ";").encode()
    data = chunk * ((100 << 20) // len(chunk)) + k.encode()
    (tmp_path / "min.js").write_bytes(data)
    start = time.perf_counter()
    r = run_scan(["-f", "json", "min.js"], tmp_path)
    assert r.code == 1 and [f["line"] for f in r.findings()] == [1]
    assert time.perf_counter() - start < 120


@pytest.mark.parametrize("fmt", ["%{:02X}", "%{:02x}"])
def test_percent_encoded_key_from_an_encoder_that_escapes_dashes(fmt: str) -> None:
    k = key()
    enc = "".join(fmt.format(ord(c)) if c in "-_" else c for c in k)
    assert hits(("https://example.invalid/cb?key=" + enc + "&next=1").encode()) == [(k, "percent", "", 1)]
