"""The Secrets Manager rotation function against moto (in process), with FakeAnthropic as the
Anthropic API and a loopback webhook receiving the notifications.

moto's Lambda is a stub that runs none of our code, so the tests play Secrets Manager: they
start a rotation with RotateSecret (which makes the empty AWSPENDING version <token>, as AWS
does) and deliver the four events to the handler, in order, repeated and out of order.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")
pytest.importorskip("keyvault.backends.aws")
pytest.importorskip("keyvault.rotate.engine")

from keyvault.integrations import aws_lambda  # noqa: E402
from keyvault.integrations.aws_lambda import NoDepositError, RotationStepError, handler, load_context  # noqa: E402
from keyvault.notify import Notifier  # noqa: E402
from keyvault.testing.fake_anthropic import FakeAnthropic  # noqa: E402
from keyvault.testing.keygen import make_key  # noqa: E402
from keyvault.testing.webhook import WebhookReceiver  # noqa: E402

REGION = "us-east-1"
NAME = "prod/anthropic"
SOURCE = f"aws-sm://{NAME}?region={REGION}#api_key"


@dataclass
class Rig:
    sm: Any
    arn: str
    function_arn: str
    fake: FakeAnthropic
    old: Any  # MintedKey
    hook: WebhookReceiver
    err: io.StringIO
    policy_path: Path

    def ctx(self) -> aws_lambda.Context:
        notifier = Notifier(self.hook.url, "whsec", stream=self.err, retry_delay=0.01)
        return load_context(str(self.policy_path), "prod", notifier=notifier, log=lambda line: self.err.write(line + "\n"))

    def stages(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in self.sm.describe_secret(SecretId=self.arn)["VersionIdsToStages"].items()}

    def value(self, **selector: str) -> str:
        return json.loads(self.sm.get_secret_value(SecretId=self.arn, **selector)["SecretString"])["api_key"]

    def stage(self, secret: Any) -> None:
        """What `keyvault stage` does: the backend's pending slot (AWSPENDING)."""
        from keyvault.backends import open_backend

        open_backend(SOURCE).stage(secret)

    def start_rotation(self) -> str:
        """Secrets Manager's RotateSecret, with AWS's documented precondition enforced (moto
        does not check it): no AWSPENDING on a version other than AWSCURRENT."""
        for labels in self.stages().values():
            if "AWSPENDING" in labels and "AWSCURRENT" not in labels:
                raise AssertionError("AWS would refuse: a previous rotation is still in progress")
        return self.sm.rotate_secret(
            SecretId=self.arn, RotationLambdaARN=self.function_arn, RotationRules={"AutomaticallyAfterDays": 90}
        )["VersionId"]

    def event(self, step: str, token: str) -> dict[str, str]:
        return {"Step": step, "SecretId": self.arn, "ClientRequestToken": token}

    def notified(self) -> list[str]:
        return [r.json["event"] for r in self.hook.requests]


def _stub_lambda() -> str:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="keyvault-rotator", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("stub.py", "def handler(event, context):\n    return None\n")
    fn = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="keyvault-rotate", Runtime="python3.12", Role=role, Handler="stub.handler",
        Code={"ZipFile": buf.getvalue()},
    )
    return fn["FunctionArn"]


def _policy(tmp_path: Path, grace: str = "1h") -> Path:
    path = tmp_path / "rotation.toml"
    path.write_text(
        "[rotation]\n"
        'app = "chat"\n'
        f'grace = "{grace}"\n'
        'admin_key = "env://ANTHROPIC_ADMIN_KEY"\n'
        "[environments.prod]\n"
        f'targets = ["{SOURCE}"]\n'
    )
    return path


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    from moto import mock_aws

    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "KEYVAULT_WEBHOOK_URL", "KEYVAULT_WEBHOOK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with FakeAnthropic() as fake, WebhookReceiver(secret="whsec") as hook, mock_aws(config={"lambda": {"use_docker": False}}):
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        admin = fake.mint_key("admin", admin=True)
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", admin.secret.reveal())
        old = fake.mint_key("prod-chat-old")
        sm = boto3.client("secretsmanager", region_name=REGION)
        arn = sm.create_secret(Name=NAME, SecretString=json.dumps({"api_key": old.secret.reveal(), "other": "kept"}))["ARN"]
        function_arn = _stub_lambda()
        # what template.yaml's RotationSchedule does (RotateImmediatelyOnUpdate: false): rotation
        # enabled with RotationRules, no rotation started. moto always starts one; undo its stub.
        stub = sm.rotate_secret(SecretId=arn, RotationLambdaARN=function_arn,
                                RotationRules={"AutomaticallyAfterDays": 90})["VersionId"]
        sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=stub)
        yield Rig(sm, arn, function_arn, fake, old, hook, io.StringIO(), _policy(tmp_path))


def _run_all(rig: Rig, ctx: aws_lambda.Context, token: str) -> list[str]:
    return [handler(rig.event(step, token), ctx=ctx)["outcome"] for step in aws_lambda.STEPS]


def test_staged_key_rotates_through_the_four_steps(rig: Rig) -> None:
    new = rig.fake.mint_key("prod-chat-new")
    rig.stage(new.secret)
    ctx = rig.ctx()
    started = handler({"keyvault": "maintain"}, ctx=ctx)
    assert started["action"] == "rotation-started"
    token = started["token"]
    # the deposit was handed to Secrets Manager: AWSPENDING is on AWS's empty version
    assert "AWSPENDING" in rig.stages()[token]
    assert any(aws_lambda.DEPOSIT_LABEL in labels for labels in rig.stages().values())

    assert _run_all(rig, ctx, token) == ["created", "nothing to set", "tested", "finished"]

    assert rig.value(VersionStage="AWSCURRENT") == new.secret.reveal()
    assert rig.value(VersionStage="AWSPREVIOUS") == rig.old.secret.reveal()
    stages = rig.stages()
    assert stages[token] == ["AWSCURRENT"]  # AWSPENDING removed: the next RotateSecret can start
    assert not any(aws_lambda.DEPOSIT_LABEL in labels for labels in stages.values())
    # other fields of the JSON secret are kept
    assert json.loads(rig.sm.get_secret_value(SecretId=rig.arn, VersionStage="AWSCURRENT")["SecretString"])["other"] == "kept"
    assert rig.notified() == ["rotated"]
    assert all(r.signature_ok for r in rig.hook.requests)
    # the journal is parked at the grace period for the engine to finish
    state, _ = ctx.backend.read_state()
    assert state["step"] == "grace" and state["phase"] == "parked" and state["aws_token"] == token
    assert state["new_fp"] == new.secret.fingerprint and state["old_id"] == rig.old.id
    # no key value in anything the function printed or sent
    out = rig.err.getvalue() + "".join(r.body.decode() for r in rig.hook.requests)
    assert new.secret.reveal() not in out and rig.old.secret.reveal() not in out


def test_repeated_steps_change_nothing_twice(rig: Rig) -> None:
    new = rig.fake.mint_key("prod-chat-new")
    rig.stage(new.secret)
    ctx = rig.ctx()
    token = handler({"keyvault": "maintain"}, ctx=ctx)["token"]
    for step in aws_lambda.STEPS:
        first = handler(rig.event(step, token), ctx=ctx)["outcome"]
        versions_after_first = rig.stages()
        again = handler(rig.event(step, token), ctx=ctx)["outcome"]  # an AWS retry
        assert rig.stages() == versions_after_first, step
        assert again in (first, "already created", "already current"), (step, first, again)
    assert rig.value(VersionStage="AWSCURRENT") == new.secret.reveal()
    assert rig.notified() == ["rotated"]  # one rotation, one notification
    # every step after the end is a no-op too
    assert [handler(rig.event(s, token), ctx=ctx)["outcome"] for s in aws_lambda.STEPS] == ["already current"] * 4


def test_steps_out_of_order_are_refused_and_change_nothing(rig: Rig) -> None:
    new = rig.fake.mint_key("prod-chat-new")
    rig.stage(new.secret)
    ctx = rig.ctx()
    token = handler({"keyvault": "maintain"}, ctx=ctx)["token"]
    before = rig.stages()
    for step in ("setSecret", "testSecret"):
        with pytest.raises(RotationStepError, match="has no value"):
            handler(rig.event(step, token), ctx=ctx)
    with pytest.raises(RotationStepError, match="createSecret has not run"):
        handler(rig.event("finishSecret", token), ctx=ctx)
    assert rig.stages() == before
    handler(rig.event("createSecret", token), ctx=ctx)
    with pytest.raises(RotationStepError, match="has not passed testSecret"):
        handler(rig.event("finishSecret", token), ctx=ctx)
    assert rig.value(VersionStage="AWSCURRENT") == rig.old.secret.reveal()
    handler(rig.event("testSecret", token), ctx=ctx)
    assert handler(rig.event("finishSecret", token), ctx=ctx)["outcome"] == "finished"
    assert rig.value(VersionStage="AWSCURRENT") == new.secret.reveal()


def test_without_a_deposit_create_fails_and_leaves_the_secret_untouched(rig: Rig) -> None:
    before_value = rig.value(VersionStage="AWSCURRENT")
    current = [v for v, labels in rig.stages().items() if "AWSCURRENT" in labels]
    ctx = rig.ctx()
    token = rig.start_rotation()  # the 90-day schedule fires, nobody staged a key
    with pytest.raises(NoDepositError, match="no new key has been deposited") as info:
        handler(rig.event("createSecret", token), ctx=ctx)
    assert "keyvault stage" in str(info.value)
    assert [v for v, labels in rig.stages().items() if labels] == current  # only AWSCURRENT is labelled
    assert rig.value(VersionStage="AWSCURRENT") == before_value
    assert rig.notified() == ["waiting"]
    assert "prod-chat-" in rig.hook.requests[0].json["detail"]  # the key name to create
    # AWS retries the step: refused cleanly, no second notification
    with pytest.raises(RotationStepError, match="not AWSPENDING"):
        handler(rig.event("createSecret", token), ctx=ctx)
    assert rig.notified() == ["waiting"]
    # and a later RotateSecret is not blocked by a leftover AWSPENDING
    rig.start_rotation()


def test_refused_new_key_is_dropped_and_reported(rig: Rig) -> None:
    stranger = make_key()  # well-formed, but the API has never seen it: 401
    rig.stage(stranger)
    ctx = rig.ctx()
    token = handler({"keyvault": "maintain"}, ctx=ctx)["token"]
    handler(rig.event("createSecret", token), ctx=ctx)
    handler(rig.event("setSecret", token), ctx=ctx)
    with pytest.raises(RotationStepError, match="refused by the API"):
        handler(rig.event("testSecret", token), ctx=ctx)
    assert rig.value(VersionStage="AWSCURRENT") == rig.old.secret.reveal()
    assert not any("AWSPENDING" in labels for labels in rig.stages().values())
    assert rig.notified() == ["failed"]
    state, _ = ctx.backend.read_state()
    assert state["phase"] == "aborted"
    with pytest.raises(RotationStepError):
        handler(rig.event("finishSecret", token), ctx=ctx)
    assert rig.value(VersionStage="AWSCURRENT") == rig.old.secret.reveal()


def test_undetermined_api_answer_fails_the_step_for_a_retry(rig: Rig) -> None:
    from keyvault.errors import ApiError

    new = rig.fake.mint_key("prod-chat-new")
    rig.stage(new.secret)
    ctx = rig.ctx()
    token = handler({"keyvault": "maintain"}, ctx=ctx)["token"]
    handler(rig.event("createSecret", token), ctx=ctx)
    rig.fake.inject("/v1/models", 529, count=None)
    with pytest.raises(ApiError):
        handler(rig.event("testSecret", token), ctx=ctx)
    assert "AWSPENDING" in rig.stages()[token]  # nothing dropped: AWS retries
    rig.fake.clear_faults()
    assert handler(rig.event("testSecret", token), ctx=ctx)["outcome"] == "tested"
    assert handler(rig.event("finishSecret", token), ctx=ctx)["outcome"] == "finished"


def test_event_for_another_secret_is_refused(rig: Rig) -> None:
    other = rig.sm.create_secret(Name="prod/other", SecretString="x")["ARN"]
    with pytest.raises(RotationStepError, match="not " + other):
        handler({"Step": "createSecret", "SecretId": other, "ClientRequestToken": "t" * 36}, ctx=rig.ctx())


def test_unknown_events_are_refused(rig: Rig) -> None:
    ctx = rig.ctx()
    with pytest.raises(RotationStepError, match="unknown rotation step"):
        handler({"Step": "dropSecret", "SecretId": rig.arn, "ClientRequestToken": "t" * 36}, ctx=ctx)
    with pytest.raises(RotationStepError, match="unrecognised event"):
        handler({"hello": "world"}, ctx=ctx)


def test_maintenance_revokes_the_old_key_after_the_grace_period(rig: Rig, tmp_path: Path) -> None:
    rig.policy_path = _policy(tmp_path, grace="0s")
    new = rig.fake.mint_key("prod-chat-new")
    rig.stage(new.secret)
    ctx = rig.ctx()
    token = handler({"keyvault": "maintain"}, ctx=ctx)["token"]
    _run_all(rig, ctx, token)
    assert rig.fake.key(rig.old.id).status == "active"  # still serving stragglers
    outcome = handler({"keyvault": "maintain"}, ctx=ctx)  # the next daily run
    assert outcome["action"] == "engine", outcome
    assert rig.fake.key(rig.old.id).status == "inactive"
    assert rig.notified() == ["rotated", "revoked"]
    # a late AWS retry of the last step changes nothing and notifies nothing
    assert handler(rig.event("finishSecret", token), ctx=ctx)["outcome"] == "already current"
    assert rig.notified() == ["rotated", "revoked"]
    state, _ = ctx.backend.read_state()
    assert state["step"] in ("archive", "done")


def test_maintenance_without_deposit_reports_the_age(rig: Rig) -> None:
    ctx = rig.ctx()
    outcome = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, ctx=ctx)
    assert outcome["action"] == "engine" and outcome["phase"] == "not-due"
    assert rig.notified() == []
