"""A replayed SECRET_ROTATE message (Pub/Sub delivers at least once, and anyone who can publish
to the topic can resend an old one) changes nothing the first delivery did not."""

from __future__ import annotations

import pytest

pytest.importorskip("google.cloud.secretmanager")
pytest.importorskip("keyvault.integrations.gcp_rotate")

from keyvault.backends import open_backend  # noqa: E402
from tests.test_gcp_rotate import PROJECT, SECRET, Rig, rig, secret_message  # noqa: E402,F401


def test_the_same_rotate_message_twice_rotates_once(rig: Rig) -> None:  # noqa: F811
    new = rig.fake.mint_key("prod-chat-new")
    open_backend(rig.source).stage(new.secret)
    message = secret_message("SECRET_ROTATE", f"projects/{PROJECT}/secrets/{SECRET}", message_id="42")
    first = rig.handle(message)
    assert first["phase"] == "parked" and rig.current() == new.secret.reveal()
    versions = [v.version for v in open_backend(rig.source).versions()]
    journal = open_backend(rig.source).read_state()[0]
    for _ in range(2):
        again = rig.handle(message)
        assert again.get("phase") in (None, "parked"), again
    assert rig.current() == new.secret.reveal()
    assert [v.version for v in open_backend(rig.source).versions()] == versions, "a replay wrote a new version"
    assert rig.notified() == ["rotated"], "a replay notified again"
    assert rig.fake.key(rig.old.id).status == "active", "a replay cut the grace period short"
    assert rig.fake.key(new.id).status == "active"
    state = open_backend(rig.source).read_state()[0]
    assert state is not None and journal is not None
    assert {k: state[k] for k in ("old_fp", "new_fp", "revoke_after")} == {k: journal[k] for k in ("old_fp", "new_fp", "revoke_after")}
