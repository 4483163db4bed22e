"""The templates in deploy/ parse, are hardened, hold no credential, and run a command line the
CLI accepts (parsed by the real click command, not compared to a string)."""

from __future__ import annotations

import configparser
import json
import os
import sys
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# anything that would be a long-lived credential in a template
CREDENTIAL_RE = re.compile(
    r"sk-ant-[a-z]+\d\d-[A-Za-z0-9_-]{8}|AKIA[0-9A-Z]{16}|aws_secret_access_key|aws-secret-access-key"
    r"|credentials_json|private_key|BEGIN [A-Z ]*PRIVATE KEY|hvs\.[A-Za-z0-9]{20}",
    re.I,
)


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _on(workflow: dict[str, Any]) -> Any:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def accepted_by_cli(argv: list[str]) -> Any:
    """Parse argv with the real command, without running it: unknown options, missing values
    and wrong types fail here exactly as they would on the scheduler."""
    import click

    from keyvault.cli import cli

    assert argv[0] == "keyvault", argv
    group_ctx = click.Context(cli, info_name="keyvault")
    name, *rest = argv[1:]
    command = cli.get_command(group_ctx, name)
    assert command is not None, f"keyvault has no command {name!r}"
    try:
        return command.make_context(name, list(rest), parent=group_ctx)
    except click.UsageError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"{' '.join(argv)}: {exc.format_message()}")


def _rotate_cli_available() -> bool:
    try:
        import keyvault.cli.rotate  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


needs_rotate_cli = pytest.mark.skipif(not _rotate_cli_available(), reason="keyvault rotate not built yet")


# --- the command each template runs -------------------------------------------------------


def _cronjob(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    docs = {d["kind"]: d for d in _yaml_docs(path)}
    return docs["CronJob"], docs["ConfigMap"], docs["ServiceAccount"]


def _container(cronjob: dict[str, Any]) -> dict[str, Any]:
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def kubernetes_argv(path: Path) -> list[str]:
    container = _container(_cronjob(path)[0])
    argv = list(container["command"]) + list(container.get("args", []))
    if argv[:2] == ["/bin/sh", "-c"]:
        script = argv[2]
        assert "exec keyvault " in script
        return shlex.split(script.split("exec ", 1)[1])
    return argv


def systemd_argv() -> list[str]:
    unit = _systemd("keyvault-rotate.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0] == "/opt/keyvault/bin/keyvault"
    return ["keyvault", *argv[1:]]


def workflow_argvs(path: Path) -> list[list[str]]:
    wf = yaml.safe_load(path.read_text())
    found = []
    for job in wf["jobs"].values():
        for step in job["steps"]:
            run = step.get("run", "")
            if run.startswith("keyvault "):
                env = {k: "prod" for k in step.get("env", {})}
                found.append([re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), a) for a in shlex.split(run)])
    return found


def _systemd(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


ROTATE_COMMANDS = {
    "kubernetes-vault": lambda: kubernetes_argv(DEPLOY / "kubernetes" / "cronjob-vault.yaml"),
    "kubernetes-workload-identity": lambda: kubernetes_argv(DEPLOY / "kubernetes" / "cronjob-workload-identity.yaml"),
    "systemd": systemd_argv,
    "github-actions": lambda: workflow_argvs(DEPLOY / "github-actions" / "rotate.yml")[0],
    "github-actions-gcp": lambda: workflow_argvs(DEPLOY / "github-actions" / "rotate.yml")[1],
}


@pytest.mark.parametrize("where", sorted(ROTATE_COMMANDS))
def test_each_scheduler_runs_non_interactive_rotation(where: str) -> None:
    argv = ROTATE_COMMANDS[where]()
    assert argv[:2] == ["keyvault", "rotate"]
    assert "--non-interactive" in argv
    assert "--policy" in argv and "--env" in argv


@needs_rotate_cli
@pytest.mark.parametrize("where", sorted(ROTATE_COMMANDS))
def test_each_scheduler_command_is_accepted_by_the_cli(where: str) -> None:
    ctx = accepted_by_cli(ROTATE_COMMANDS[where]())
    assert ctx.params.get("non_interactive") is True
    assert ctx.params.get("env_name") == "prod"


def test_a_wrong_option_would_be_caught() -> None:
    """The acceptance check above fails on a typo (proves it can fail)."""
    if not _rotate_cli_available():
        pytest.skip("keyvault rotate not built yet")
    with pytest.raises(pytest.fail.Exception, match="no-such-option"):
        accepted_by_cli(["keyvault", "rotate", "--no-such-option"])


# --- no credential anywhere ---------------------------------------------------------------


def test_no_template_holds_a_credential() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [ROOT / "action.yml"]
    assert len(files) >= 10
    for path in files:
        text = path.read_text()
        hit = CREDENTIAL_RE.search(text)
        assert hit is None, f"{path.relative_to(ROOT)}: {hit.group(0)[:12]}..."


# --- Kubernetes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cronjob-vault.yaml", "cronjob-workload-identity.yaml"])
def test_cronjob_is_a_hardened_job_that_ends(name: str) -> None:
    cronjob, configmap, account = _cronjob(DEPLOY / "kubernetes" / name)
    assert cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"  # two rotators at once: the engine copes, but why try
    assert len(spec["schedule"].split()) == 5
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = _container(cronjob)
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    # nothing secret in plain env values: only references
    for var in container.get("env", []):
        if "value" in var:
            assert not CREDENTIAL_RE.search(str(var["value"]))
            assert "KEY" not in var["name"] and "TOKEN" not in var["name"] and "SECRET" not in var["name"]
    # the policy file is mounted where the command looks for it
    mount = next(m for m in container["volumeMounts"] if m["name"] == "policy")
    policy_path = kubernetes_argv(DEPLOY / "kubernetes" / name)
    assert policy_path[policy_path.index("--policy") + 1] == f"{mount['mountPath']}/rotation.toml"
    assert "rotation.toml" in configmap["data"]


def test_vault_cronjob_uses_the_agent_and_ends() -> None:
    cronjob, _, _ = _cronjob(DEPLOY / "kubernetes" / "cronjob-vault.yaml")
    notes = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
    assert notes["vault.hashicorp.com/agent-inject"] == "true"
    assert notes["vault.hashicorp.com/role"]
    # without pre-populate-only the agent sidecar keeps running and the Job never completes
    assert notes["vault.hashicorp.com/agent-pre-populate-only"] == "true"
    script = _container(cronjob)["args"][0]
    assert "/vault/secrets/token" in script and "VAULT_TOKEN" in script


def test_workload_identity_service_account_is_annotated() -> None:
    _, _, account = _cronjob(DEPLOY / "kubernetes" / "cronjob-workload-identity.yaml")
    notes = account["metadata"]["annotations"]
    assert notes["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    assert notes["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


@pytest.mark.parametrize("name", ["cronjob-vault.yaml", "cronjob-workload-identity.yaml"])
def test_embedded_policy_parses(name: str) -> None:
    policy_mod = pytest.importorskip("keyvault.policy")
    _, configmap, _ = _cronjob(DEPLOY / "kubernetes" / name)
    policy = policy_mod.parse_policy(configmap["data"]["rotation.toml"])
    argv = kubernetes_argv(DEPLOY / "kubernetes" / name)
    env = policy.environment(argv[argv.index("--env") + 1])
    assert env.targets
    assert policy.max_age_days == 90


# --- systemd ------------------------------------------------------------------------------


def test_systemd_units_are_hardened_oneshot_and_timer() -> None:
    service = _systemd("keyvault-rotate.service")["Service"]
    assert service["Type"] == "oneshot"
    for option, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "DynamicUser": "yes",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(option) == value, option
    timer = _systemd("keyvault-rotate.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_accepts_the_units_and_rates_them_safe(tmp_path: Path) -> None:
    """systemd's own parser: unknown keys, bad values and calendar specs are reported; the
    security score is systemd's exposure rating (0 safest .. 10), offline."""
    service = (DEPLOY / "systemd" / "keyvault-rotate.service").read_text()
    # verify checks that ExecStart exists: point it at a real executable of the same shape
    (tmp_path / "keyvault-rotate.service").write_text(service.replace("/opt/keyvault/bin/keyvault", "/bin/true"))
    shutil.copy(DEPLOY / "systemd" / "keyvault-rotate.timer", tmp_path / "keyvault-rotate.timer")
    verify = subprocess.run(
        ["systemd-analyze", "verify", "keyvault-rotate.service", "keyvault-rotate.timer"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", "keyvault-rotate.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    m = re.search(r"Overall exposure level for keyvault-rotate\.service: ([\d.]+)", security.stdout)
    assert m, security.stdout[-500:] + security.stderr
    assert float(m.group(1)) <= 2.0 and security.returncode == 0
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", _systemd("keyvault-rotate.timer")["Timer"]["OnCalendar"]],
        capture_output=True, text=True, timeout=30,
    )
    assert calendar.returncode == 0, calendar.stderr


# --- GitHub Actions -----------------------------------------------------------------------


def test_rotation_workflow_is_scheduled_and_uses_oidc_only() -> None:
    wf = yaml.safe_load((DEPLOY / "github-actions" / "rotate.yml").read_text())
    on = _on(wf)
    assert on["schedule"][0]["cron"] and len(on["schedule"][0]["cron"].split()) == 5
    assert "workflow_dispatch" in on
    assert wf["permissions"] == {"contents": "read", "id-token": "write"}
    assert wf["concurrency"]["cancel-in-progress"] is False
    uses = [s["uses"] for job in wf["jobs"].values() for s in job["steps"] if "uses" in s]
    aws = next(s for job in wf["jobs"].values() for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    gcp = next(s for job in wf["jobs"].values() for s in job["steps"] if s.get("uses", "").startswith("google-github-actions/auth@"))
    assert set(aws["with"]) >= {"role-to-assume", "aws-region"}
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws["with"])
    assert set(gcp["with"]) >= {"workload_identity_provider", "service_account"}
    assert "credentials_json" not in gcp["with"]
    assert all("@" in u for u in uses)  # every action pinned
    # the only secrets used are the notification settings, never a cloud or Anthropic key
    used = set(re.findall(r"secrets\.(\w+)", (DEPLOY / "github-actions" / "rotate.yml").read_text()))
    assert used == {"KEYVAULT_WEBHOOK_URL", "KEYVAULT_WEBHOOK_SECRET"}


def test_container_image_copies_what_exists() -> None:
    dockerfile = (DEPLOY / "container" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    assert re.search(r"^USER 10001", dockerfile, re.M)


# --- AWS Lambda: SAM template and zip layout ---------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (!Ref, !Sub, !GetAtt, ...)."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def test_sam_template_wires_rotation_to_the_handler() -> None:
    template = yaml.load((DEPLOY / "aws-lambda" / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    resources = template["Resources"]
    function = resources["RotationFunction"]["Properties"]
    assert function["Handler"] == "keyvault.integrations.aws_lambda.handler"
    assert function["CodeUri"] == "build/keyvault-rotation.zip"
    assert function["Environment"]["Variables"]["KEYVAULT_POLICY"] == "/var/task/rotation.toml"
    schedule = resources["RotationSchedule"]["Properties"]
    assert schedule["RotationRules"] == {"AutomaticallyAfterDays": 90}
    assert schedule["RotateImmediatelyOnUpdate"] is False
    assert resources["SecretsManagerInvoke"]["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    daily = function["Events"]["Daily"]["Properties"]
    assert json.loads(daily["Input"]) == {"keyvault": "maintain"}
    # least privilege: the one secret, its journal and the admin key; no wildcard resources
    for statement in function["Policies"][0]["Statement"]:
        for resource in statement["Resource"]:
            assert "*" not in str(resource).replace("-??????", ""), statement["Sid"]


def test_lambda_zip_layout_matches_the_handler(tmp_path: Path) -> None:
    import zipfile

    policy = tmp_path / "policy.toml"
    policy.write_text('[environments.prod]\ntargets = ["aws-sm://prod/anthropic#api_key"]\n')
    build = subprocess.run(
        ["bash", str(DEPLOY / "aws-lambda" / "build.sh"), "--no-deps", str(policy)],
        env={**os.environ, "BUILD_DIR": str(tmp_path / "build"), "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    archive = tmp_path / "build" / "keyvault-rotation.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "rotation.toml" in names and "keyvault/integrations/aws_lambda.py" in names
    assert not any(n.startswith("keyvault/testing/") or "__pycache__" in n for n in names)
    unpacked = tmp_path / "task"
    zipfile.ZipFile(archive).extractall(unpacked)
    # what the Lambda runtime does: import the handler from the task root
    probe = subprocess.run(
        [sys.executable, "-c", "import keyvault.integrations.aws_lambda as m, keyvault; print(m.handler.__name__, keyvault.__file__)"],
        cwd=unpacked, env={**os.environ, "PYTHONPATH": str(unpacked)}, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split()[0] == "handler" and probe.stdout.split()[1].startswith(str(unpacked))
    bad = subprocess.run(["bash", str(DEPLOY / "aws-lambda" / "build.sh"), "--no-deps", str(tmp_path / "missing.toml")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not found" in bad.stderr


# --- GCP: Terraform snippet and function source --------------------------------------------------


def test_gcp_snippet_sets_rotation_and_topic_and_deploys_the_entry_point() -> None:
    import ast

    tf = (DEPLOY / "gcp" / "rotation.tf").read_text()
    assert re.search(r'rotation_period\s*=\s*"86400s"', tf)
    assert re.search(r"next_rotation_time\s*=\s*var\.next_rotation_time", tf)
    assert re.search(r"topics\s*\{\s*name\s*=\s*google_pubsub_topic\.rotate\.id", tf)
    assert 'event_type            = "google.cloud.pubsub.topic.v1.messagePublished"' in tf
    entry = re.search(r'entry_point\s*=\s*"(\w+)"', tf)
    assert entry is not None
    assert tf.count("{") == tf.count("}")
    source = ast.parse((DEPLOY / "gcp" / "function" / "main.py").read_text())
    functions = {f.name: f for f in source.body if isinstance(f, ast.FunctionDef)}
    assert entry.group(1) in functions  # the deployed entry point exists
    decorator = functions[entry.group(1)].decorator_list[0]
    assert ast.unparse(decorator) == "functions_framework.cloud_event"
    imported = {(n.module, a.name) for n in source.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("keyvault.integrations.gcp_rotate", "handle_cloud_event") in imported
    from keyvault.integrations import gcp_rotate

    assert callable(gcp_rotate.handle_cloud_event)
    assert "keyvault-anthropic[gcp]" in (DEPLOY / "gcp" / "function" / "requirements.txt").read_text()
