"""pytest fixtures shipped with keyvault (loaded through the `pytest11` entry point).

Module import stays cheap: servers and SDKs are imported inside the fixtures.
"""

from __future__ import annotations
