"""The rotation policy: defaults, the shipped file, and errors that point at file, line and key."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from keyvault.policy import PolicyError, load_policy, parse_duration, parse_policy

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rotation.toml"
    p.write_text(text)
    return p


def test_shipped_policy_loads_with_documented_defaults() -> None:
    policy = load_policy(ROOT / "policies" / "rotation.toml")
    assert policy.max_age_days == 90
    assert policy.grace == timedelta(hours=24)
    assert policy.archive_delay == timedelta(days=30)
    assert policy.name_template == "{env}-{app}-{date}"
    prod = policy.environment("prod")
    assert prod.primary.source.startswith("aws-sm://")
    assert [t.source.split("://")[0] for t in prod.targets] == ["aws-sm", "vault"]
    assert policy.key_name(prod, date(2026, 11, 22)) == "prod-chat-2026-11-22"


def test_minimal_policy_and_target_tables(tmp_path: Path) -> None:
    p = write(tmp_path, """
[rotation]
app = "billing"
grace = "90m"
archive_delay = 0
workspace_id = "wrkspc_01"

[environments.staging]
workspace_id = "wrkspc_02"
[[environments.staging.targets]]
source = "file://store#staging"
check = "true"
check_timeout = "5s"
check_env = "MY_KEY"
[[environments.staging.targets]]
source = "dotenv://.env#ANTHROPIC_API_KEY"
""")
    policy = load_policy(p)
    env = policy.environment()  # the only one
    assert env.name == "staging" and env.workspace_id == "wrkspc_02" and env.app == "billing"
    first, second = env.targets
    assert (first.check, first.check_timeout, first.check_env) == ("true", timedelta(seconds=5), "MY_KEY")
    assert first.line == 10 and second.line == 15
    assert policy.grace == timedelta(minutes=90) and policy.archive_delay == timedelta(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[rotation]\nmax_age_days = \"ninety\"\n", "line 2: rotation.max_age_days: expected a whole number of days, got a string"),
        ("[rotation]\nmax_age_days = 0\n", "line 2: rotation.max_age_days: 0 is out of range; expected 1 to 3650"),
        ("[rotation]\ngrace = \"1 fortnight\"\n", "line 2: rotation.grace: '1 fortnight' is not a duration"),
        ("[rotation]\ngarce = \"1h\"\n", "line 2: rotation.garce: unknown setting 'garce'; did you mean 'grace'?"),
        ("[rotation]\nwarn_days = 90\n", "line 2: rotation.warn_days: warn_days (90) must be less than max_age_days (90)"),
        ("[rotation]\nname_template = \"{env}-{region}\"\n", "line 2: rotation.name_template: unknown field {region}"),
        ("[rotation]\nadmin_key = \"sk-ant-admin01-abc\"\n", "line 2: rotation.admin_key: this is a key, not a source"),
        ("x = [\n", "not valid TOML"),
        ("[rotation]\n", "no [environments.NAME] table"),
        ("[environments.prod]\nworkspace = 1\n", "line 2: environments.prod.workspace: unknown setting 'workspace'; did you mean 'workspace_id'?"),
        ("[environments.prod]\ntargets = []\n", "line 2: environments.prod.targets: expected a non-empty list"),
        ("[environments.prod]\n", "line 1: environments.prod: missing 'targets'"),
        ("[environments.prod]\ntargets = [\"nope\"]\n", "source 'nope' is not a URI"),
        ("[environments.prod]\ntargets = [\"env://ANTHROPIC_API_KEY\"]\n", "cannot be a rotation target"),
        ("[environments.prod]\ntargets = [\"file://s#a\", \"file://s#a\"]\n", "is listed twice"),
        ("[environments.prod]\n\n[[environments.prod.targets]]\nsource = \"file://s#a\"\ncheck = \"\"\n", "line 3: environments.prod.targets[0].check: expected a shell command"),
        ("[environments.prod]\n\n[[environments.prod.targets]]\nsorce = \"file://s#a\"\n", "line 3: environments.prod.targets[0]: unknown setting 'sorce'; did you mean 'source'?"),
        ("[environments.prod]\ntargets = [\"sk-ant-api03-abc\"]\n", "this is a key, not a source"),
    ],
)
def test_errors_name_file_line_key_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(p)
    message = str(info.value)
    assert str(p) in message
    assert expected in message


def test_toml_syntax_error_keeps_tomllib_position(tmp_path: Path) -> None:
    p = write(tmp_path, "[rotation]\napp = \"x\"\ngrace = \n")
    with pytest.raises(PolicyError, match=r"line 3"):
        load_policy(p)


def test_environment_selection_errors() -> None:
    policy = parse_policy('[environments.a]\ntargets=["file://s#a"]\n[environments.b]\ntargets=["file://s#b"]\n')
    with pytest.raises(PolicyError, match="several environments \\(a, b\\); choose one with --env"):
        policy.environment()
    with pytest.raises(PolicyError, match="no environment 'c'; the policy defines: a, b"):
        policy.environment("c")


def test_missing_file_and_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "absent.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEYVAULT_POLICY", raising=False)
    with pytest.raises(PolicyError, match="no rotation policy found: pass --policy FILE"):
        load_policy()
    (tmp_path / "rotation.toml").write_text('[environments.x]\ntargets=["file://s#x"]\n')
    assert load_policy().environment().name == "x"


@pytest.mark.parametrize(
    ("value", "seconds"), [("45s", 45), ("30m", 1800), ("24h", 86400), ("30d", 2592000), ("2w", 1209600), (90, 90), ("1.5h", 5400)]
)
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value, "x") == timedelta(seconds=seconds)


def test_negative_and_bool_durations_rejected() -> None:
    with pytest.raises(PolicyError, match="negative"):
        parse_duration(-1, "x")
    with pytest.raises(PolicyError, match="expected a duration"):
        parse_duration(True, "x")


@pytest.mark.parametrize("value", [10**400, float("inf"), "3651d", "99999999999999999999w", 1e300])
def test_durations_past_the_bound_are_policy_errors(value: object) -> None:
    with pytest.raises(PolicyError, match="x: .* is too long; a duration can be at most 3650d"):
        parse_duration(value, "x")
    assert parse_duration("3650d", "x") == timedelta(days=3650)


def test_nan_duration_is_a_policy_error(tmp_path: Path) -> None:
    p = write(tmp_path, "[environments.prod]\n[[environments.prod.targets]]\nsource = \"file://s#a\"\ncheck_timeout = nan\n")
    with pytest.raises(PolicyError, match=r"line 2: environments.prod.targets\[0\].check_timeout: .*got nan"):
        load_policy(p)


def _keyed(template: str) -> tuple[str, str]:
    from keyvault.testing.keygen import make_key

    key = make_key()
    return template.replace("KEY", key.reveal()), key.hint


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ("[rotation]\napp = \"chat\"\n# the old one was KEY\n[environments.p]\ntargets = [\"file://s#a\"]\n", "line 3: holds"),
        ("[rotation]\nwebhook_url = \"https://h/KEY\"\n[environments.p]\ntargets = [\"file://s#a\"]\n", "line 2: holds"),
        ("[rotation]\napp = chat KEY\n", "line 2: holds"),  # not even valid TOML
    ],
)
def test_a_key_anywhere_in_the_file_is_refused_by_line(tmp_path: Path, template: str, where: str) -> None:
    text, key_hint = _keyed(template)
    p = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(p)
    message = str(info.value)
    assert f"{p}, {where} the value of an API key" in message and "treat this key as exposed" in message
    assert key_hint[:20] not in message  # not even the hint: the line is enough to find it


def test_a_key_hidden_by_a_toml_escape_is_refused_by_setting() -> None:
    text, _ = _keyed('[environments.p]\napp = "\\u0073KEY"\ntargets = ["file://s#a"]\n')
    text = text.replace("\\u0073sk-", "\\u0073k-", 1)  # the escape spells the key's first letter
    with pytest.raises(PolicyError, match=r"^policy, line 2: environments.p.app: holds the value of an API key"):
        parse_policy(text)


def test_errors_built_outside_the_parser_are_redacted_too() -> None:
    from keyvault.redact import credential_in
    from keyvault.testing.keygen import make_key

    key = make_key()
    policy = parse_policy('[environments.a]\ntargets=["file://s#a"]\n')
    with pytest.raises(PolicyError) as info:
        policy.environment(key.reveal())  # --env with a pasted key
    assert credential_in(str(info.value)) is None and key.hint in str(info.value)


def test_webhook_url_setting(tmp_path: Path) -> None:
    base = '[environments.p]\ntargets = ["file://s#a"]\n'
    assert parse_policy(base).webhook_url is None
    assert parse_policy('[rotation]\nwebhook_url = " https://hooks.example.com/T/B/x "\n' + base).webhook_url == (
        "https://hooks.example.com/T/B/x")
    for url, expected in [("ftp://h/x", "expected an http(s) URL with a host"), ("https:///x", "with a host"),
                          ("https://u:p@h/secretpath", "must not carry credentials"), ("https://h:99999/x", "not a valid URL")]:
        with pytest.raises(PolicyError, match=f"line 2: rotation.webhook_url: .*{re.escape(expected)}") as info:
            parse_policy(f'[rotation]\nwebhook_url = "{url}"\n' + base)
        assert "secretpath" not in str(info.value)  # a Slack-style URL path is a credential
