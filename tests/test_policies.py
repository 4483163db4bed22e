"""policies/: the least-privilege documents, proven where a server can enforce them.

- Vault HCL: loaded into OpenBao, which enforces it: the reader reads and nothing more; the
  rotator runs the whole stage / promote / rollback / state cycle through the backend, and is
  refused everything else.
- AWS IAM JSON: moto enforces actions only against `"Resource": "*"` and evaluates no
  Secrets Manager conditions, so (1) moto enforces the action lists, and (2) every call the
  backend makes in a cycle, recorded from boto3, is checked against the real documents
  (actions, ARN patterns, the VersionStage condition) by a small evaluator below.
- GCP IAM YAML: no server here enforces IAM; every RPC the backend makes against the fake,
  mapped to its permission and resource name, is checked against the bindings and conditions.
"""

from __future__ import annotations

import fnmatch
import json
import re
import string
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyvault.backends import open_backend
from keyvault.errors import PermissionDeniedError
from keyvault.testing.fake_gcp import PERMISSIONS
from keyvault.testing.keygen import make_key

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def render(relative: str, **values: str) -> str:
    """Fill the ${VARIABLES} exactly as `envsubst` would; a variable left unfilled fails."""
    return string.Template((POLICIES / relative).read_text()).substitute(values)


def cycle(backend: Any) -> None:
    """Everything rotation does to one secret, in order."""
    current = backend.read()
    new = make_key()
    backend.stage(new)
    assert backend.read_pending().secret == new
    assert backend.promote(current.secret.fingerprint).secret == new
    backend.versions()
    assert backend.read_previous().secret == current.secret
    assert backend.rollback(new.fingerprint).secret == current.secret
    token = backend.write_state({"step": "staged"}, None)
    token = backend.write_state({"step": "promoted"}, token)
    assert backend.read_state() == ({"step": "promoted"}, token)
    backend.stage(make_key())
    backend.clear_pending()
    assert backend.read_pending() is None


# -- Vault: enforced by OpenBao ---------------------------------------------------------------

@pytest.fixture
def vault_app(openbao, vault_env, monkeypatch):
    app = "apps/" + uuid.uuid4().hex[:10]
    root = openbao.client()
    kv = root.secrets.kv.v2
    kv.create_or_update_secret(path=f"{app}/chat", secret={"api_key": make_key().reveal(), "owner": "ai"},
                               mount_point="secret")
    kv.create_or_update_secret(path=f"{app}/other", secret={"api_key": make_key().reveal()}, mount_point="secret")
    kv.create_or_update_secret(path=f"{app}/chat2", secret={"api_key": make_key().reveal()}, mount_point="secret")
    tokens = {}
    for role in ("reader", "rotator"):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        root.sys.create_or_update_policy(name=name, policy=render(f"vault/{role}.hcl", MOUNT="secret",
                                                                   SECRET_PATH=f"{app}/chat"))
        tokens[role] = openbao.token([name])

    def as_(role: str):
        monkeypatch.setenv("VAULT_TOKEN", tokens[role])
        return openbao.client(tokens[role])

    return app, as_


def test_vault_reader_reads_and_nothing_more(vault_app):
    app, as_ = vault_app
    hv = as_("reader")
    backend = open_backend(f"vault://secret/{app}/chat#api_key")
    assert backend.read().secret.reveal().startswith("sk-ant-api03-")
    for step in (lambda: backend.stage(make_key()), lambda: backend.write_state({"a": "b"}, None),
                 backend.versions, lambda: backend.promote("0" * 64),
                 lambda: open_backend(f"vault://secret/{app}/other#api_key").read(),
                 lambda: open_backend(f"vault://secret/{app}/chat2#api_key").read()):
        with pytest.raises(PermissionDeniedError, match="permission denied"):
            step()
    import hvac.exceptions

    with pytest.raises(hvac.exceptions.Forbidden):
        hv.secrets.kv.v2.list_secrets(path=app, mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        hv.secrets.kv.v2.create_or_update_secret(path=f"{app}/chat", secret={"api_key": "x"}, mount_point="secret")


def test_vault_rotator_does_exactly_the_rotation(vault_app):
    import hvac.exceptions

    app, as_ = vault_app
    hv = as_("rotator")
    cycle(open_backend(f"vault://secret/{app}/chat#api_key"))
    kv = hv.secrets.kv.v2
    refused = [
        lambda: kv.read_secret_version(path=f"{app}/other", mount_point="secret", raise_on_deleted_version=True),
        lambda: kv.create_or_update_secret(path=f"{app}/chat2", secret={"api_key": "x"}, mount_point="secret"),
        lambda: kv.create_or_update_secret(path=f"{app}/new", secret={"api_key": "x"}, mount_point="secret"),
        lambda: kv.delete_metadata_and_all_versions(path=f"{app}/chat", mount_point="secret"),
        lambda: kv.destroy_secret_versions(path=f"{app}/chat", versions=[1], mount_point="secret"),
        lambda: kv.delete_latest_version_of_secret(path=f"{app}/chat", mount_point="secret"),
        lambda: kv.update_metadata(path=f"{app}/chat", max_versions=1, mount_point="secret"),
        lambda: kv.delete_metadata_and_all_versions(path=f"{app}/chat__keyvault-state", mount_point="secret"),
        lambda: kv.list_secrets(path=app, mount_point="secret"),
        lambda: hv.sys.create_or_update_policy(name="escalate", policy='path "*" { capabilities = ["sudo"] }'),
        lambda: hv.auth.token.create(policies=["root"]),
    ]
    for call in refused:
        with pytest.raises(hvac.exceptions.Forbidden):
            call()


# -- AWS: moto enforces actions; the evaluator checks resources and conditions ------------------

def allowed(policy: dict[str, Any], action: str, arn: str, context: dict[str, str]) -> bool:
    """IAM evaluation for the documents' own shape: Allow statements, exact actions, ARN
    patterns with ? and *, StringEquals conditions. Anything else fails closed."""
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action not in actions or not any(fnmatch.fnmatchcase(arn, r) for r in resources):
            continue
        conditions = statement.get("Condition", {})
        assert set(conditions) <= {"StringEquals"}
        if all(context.get(k) == v for k, v in conditions.get("StringEquals", {}).items()):
            return True
    return False


def aws_policy(role: str, region: str, name: str) -> dict[str, Any]:
    return json.loads(render(f"aws/{role}.json", REGION=region, ACCOUNT_ID="123456789012", SECRET_NAME=name))


def record(backend: Any) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    backend.client.meta.events.register(
        "before-parameter-build.secrets-manager",
        lambda params, model, **_: calls.append((model.name, dict(params))),
    )
    return calls


def test_aws_documents_cover_exactly_the_calls_made(aws_moto):
    sm = aws_moto.client()
    name = "prod/" + uuid.uuid4().hex[:8]
    arn = sm.create_secret(Name=name, SecretString=make_key().reveal())["ARN"]
    reader, rotator = aws_policy("reader", "us-east-1", name), aws_policy("rotator", "us-east-1", name)

    backend = open_backend(f"aws-sm://{name}")
    calls = record(backend)
    backend.read()
    for op, params in calls:
        assert allowed(reader, f"secretsmanager:{op}", arn, {"secretsmanager:VersionStage": params.get("VersionStage", "")})

    backend = open_backend(f"aws-sm://{name}")
    calls = record(backend)
    cycle(backend)
    state_arn = sm.describe_secret(SecretId=f"{name}/keyvault-state")["ARN"]
    arns = {name: arn, f"{name}/keyvault-state": state_arn}
    used = set()
    for op, params in calls:
        target = arns[params.get("SecretId") or params["Name"]]
        assert allowed(rotator, f"secretsmanager:{op}", target, {}), (op, target)
        used.add(f"secretsmanager:{op}")
    granted = {a for s in rotator["Statement"] for a in s["Action"]}
    assert used == granted  # nothing granted that rotation does not use

    # and no more: other secrets, other operations, other stages
    sibling = arn.replace(f":secret:{name}-", f":secret:{name}2-")
    nested = arn.replace(f":secret:{name}-", f":secret:{name}/other-")
    for policy in (reader, rotator):
        assert not allowed(policy, "secretsmanager:GetSecretValue", sibling, {"secretsmanager:VersionStage": "AWSCURRENT"})
        assert not allowed(policy, "secretsmanager:GetSecretValue", nested, {"secretsmanager:VersionStage": "AWSCURRENT"})
        for op in ("DeleteSecret", "PutResourcePolicy", "RotateSecret", "UpdateSecret", "TagResource", "ListSecrets"):
            assert not allowed(policy, f"secretsmanager:{op}", arn, {})
    assert not allowed(reader, "secretsmanager:GetSecretValue", arn, {"secretsmanager:VersionStage": "AWSPENDING"})
    assert not allowed(reader, "secretsmanager:PutSecretValue", arn, {})
    assert not allowed(rotator, "secretsmanager:CreateSecret", arn.replace(f":secret:{name}-", ":secret:evil-"), {})


def _moto_user(iam: Any, policy: dict[str, Any]) -> dict[str, str]:
    """An IAM user holding `policy` with the resources widened to "*" and conditions dropped:
    the only form moto's secretsmanager authorisation can evaluate."""
    statements = [{"Effect": s["Effect"], "Action": s["Action"], "Resource": "*"} for s in policy["Statement"]]
    user = "u-" + uuid.uuid4().hex[:8]
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="p",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def test_aws_actions_enforced_by_moto(aws_moto, monkeypatch):
    from moto.core import enable_iam_authentication

    sm, iam = aws_moto.client(), aws_moto.client("iam")
    name = "prod/" + uuid.uuid4().hex[:8]
    sm.create_secret(Name=name, SecretString=make_key().reveal())
    users = {role: _moto_user(iam, aws_policy(role, "us-east-1", name)) for role in ("reader", "rotator")}
    with enable_iam_authentication():
        for key, value in users["reader"].items():
            monkeypatch.setenv(key, value)
        backend = open_backend(f"aws-sm://{name}")
        assert backend.read().secret.reveal().startswith("sk-ant-")
        with pytest.raises(PermissionDeniedError, match="access denied for secretsmanager:DescribeSecret"):
            backend.stage(make_key())
        for key, value in users["rotator"].items():
            monkeypatch.setenv(key, value)
        backend = open_backend(f"aws-sm://{name}")
        cycle(backend)
        with pytest.raises(PermissionDeniedError, match="access denied"):
            backend._call("delete_secret", None, SecretId=name)


# -- GCP: checked against the calls the backend makes on the fake -------------------------------

def gcp_policy(role: str, project: str, number: str, secret: str) -> dict[str, Any]:
    return yaml.safe_load(render(
        f"gcp/{role}.yaml", PROJECT_ID=project, PROJECT_NUMBER=number, SECRET_ID=secret,
        APP_SERVICE_ACCOUNT="app@p.iam.gserviceaccount.com", ROTATOR_SERVICE_ACCOUNT="rot@p.iam.gserviceaccount.com",
    ))


def condition_allows(expression: str, resource: str) -> bool:
    """CEL for the documents' own shape: `resource.name == "x"` and
    `resource.name.startsWith("y")` joined by ||. Anything else fails the test."""
    terms = [t.strip() for t in expression.split("||")]
    results = []
    for term in terms:
        eq = re.fullmatch(r'resource\.name == "([^"]+)"', term)
        starts = re.fullmatch(r'resource\.name\.startsWith\("([^"]+)"\)', term)
        assert eq or starts, f"unsupported condition term {term!r}"
        if starts:
            assert starts.group(1).endswith("/"), "a prefix without a trailing / also matches sibling secrets"
        results.append(resource == eq.group(1) if eq else resource.startswith(starts.group(1)))
    return any(results)


ROLE_PERMISSIONS = {"roles/secretmanager.secretAccessor": {"secretmanager.versions.access"}}


def gcp_allowed(policy: dict[str, Any], permission: str, resource: str) -> bool:
    custom = policy.get("customRole")
    for binding in policy["bindings"]:
        role = binding["role"]
        permissions = set(custom["includedPermissions"]) if custom and role.endswith("/roles/" + custom["roleId"]) \
            else ROLE_PERMISSIONS[role]
        if permission in permissions and condition_allows(binding["condition"]["expression"], resource):
            return True
    return False


def as_number(resource: str, project: str, number: str) -> str:
    return resource.replace(f"projects/{project}/", f"projects/{number}/", 1)


def test_gcp_documents_cover_exactly_the_calls_made(fake_gcp):
    project, number, secret = "kv-prod", "123456789", "anthropic-key"
    fake_gcp.create_secret(project, secret, make_key().reveal())
    fake_gcp.create_secret(project, secret + "-keyvault-state")  # created once by an administrator
    fake_gcp.create_secret(project, secret + "2", make_key().reveal())
    reader, rotator = (gcp_policy(r, project, number, secret) for r in ("reader", "rotator"))
    for policy in (reader, rotator):
        for binding in policy["bindings"]:
            assert binding["role"] not in ("roles/owner", "roles/editor", "roles/secretmanager.admin")
            assert all(m.startswith("serviceAccount:") for m in binding["members"])
            assert binding["condition"]["title"] and binding["condition"]["expression"]

    source = fake_gcp.source(project, secret, "grpc")
    start = len(fake_gcp.calls)
    open_backend(source).read()
    for method, resource in fake_gcp.calls[start:]:
        assert gcp_allowed(reader, PERMISSIONS[method], as_number(resource, project, number)), (method, resource)

    start = len(fake_gcp.calls)
    cycle(open_backend(source))
    used = set()
    for method, resource in fake_gcp.calls[start:]:
        assert gcp_allowed(rotator, PERMISSIONS[method], as_number(resource, project, number)), (method, resource)
        used.add(PERMISSIONS[method])
    assert used == set(rotator["customRole"]["includedPermissions"])  # nothing granted unused

    base = f"projects/{number}/secrets/{secret}"
    for policy in (reader, rotator):
        assert not gcp_allowed(policy, "secretmanager.versions.access", f"projects/{number}/secrets/{secret}2/versions/1")
        assert not gcp_allowed(policy, "secretmanager.versions.access", f"projects/{number}/secrets/other/versions/1")
        for permission in ("secretmanager.versions.destroy", "secretmanager.secrets.delete",
                           "secretmanager.secrets.setIamPolicy", "secretmanager.secrets.create"):
            assert not gcp_allowed(policy, permission, base)
    assert not gcp_allowed(reader, "secretmanager.versions.add", base)
    assert not gcp_allowed(reader, "secretmanager.secrets.update", base)
