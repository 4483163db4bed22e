"""pytest fixtures shipped with keyvault (loaded through the `pytest11` entry point).

Module import stays cheap: servers and SDKs are imported inside the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from keyvault.testing.fake_anthropic import FakeAnthropic


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started FakeAnthropic on 127.0.0.1 (see keyvault.testing.fake_anthropic), stopped after
    the test. Point clients at `fake_anthropic.base_url`; mint keys with `.mint_key(name)`."""
    from keyvault.testing.fake_anthropic import FakeAnthropic

    with FakeAnthropic() as fake:
        yield fake
