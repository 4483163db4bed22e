"""CRC32C (Castagnoli), the checksum GCP Secret Manager puts beside every payload.

The official client neither depends on `google-crc32c` nor checks `payload.data_crc32c`, so
keyvault checks it itself. Payloads are keys (about a hundred bytes): a table-driven pure
Python loop costs microseconds, and the C package is used when it happens to be installed.
"""

from __future__ import annotations


def _table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    try:
        import google_crc32c  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return int(google_crc32c.value(data))
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
