"""``sms-gateway migrate`` and ``sms-gateway policy``: what an operator runs against RDS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sms_gateway.domain.routing import Delivery, Strategy
from sms_gateway.local.cli import main
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository


def test_migrate_then_set_a_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_DEMO_PROVIDERS", "true")
    dsn = f"sqlite:///{tmp_path / 'ops.db'}"
    assert main(["migrate", "--dsn", dsn]) == 0
    payload = '{"providers": [{"provider": "provider-a"}, {"provider": "provider-b"}]}'
    assert main(["policy", "acme", "failover", payload, "--dsn", dsn]) == 0
    direct = '{"default_provider": "provider-b"}'
    assert main(["policy", "acme", "direct", direct, "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    assert "tenant acme: direct policy, version 2" in out
    engine = make_engine(dsn)
    try:
        policy = RoutePolicyRepository(engine).get("acme")
    finally:
        engine.dispose()
    assert policy is not None
    assert (policy.strategy, policy.providers) == (Strategy.DIRECT, ("provider-b",))
    assert policy.version == 2


@pytest.mark.parametrize(
    ("strategy", "payload"),
    [
        ("weighted", '{"providers": []}'),
        ("direct", "not json"),
        ("direct", '{"default_provider": "nope"}'),
    ],
)
def test_bad_policy_is_refused(
    tmp_path: Path, strategy: str, payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_DEMO_PROVIDERS", "true")
    dsn = f"sqlite:///{tmp_path / 'ops.db'}"
    assert main(["migrate", "--dsn", dsn]) == 0
    assert main(["policy", "acme", strategy, payload, "--dsn", dsn]) == 2


TWILIO = {
    "type": "twilio",
    "account_sid": "AC" + "0" * 32,
    "auth_secret": "ssm:/sms-gateway/twilio-token",
    "from_number": "+12025550100",
}


def test_policy_names_only_declared_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment without SMS_GATEWAY_DEMO_PROVIDERS has no simulators: a policy naming
    provider-a is refused, one naming the declared Twilio provider is written."""
    monkeypatch.delenv("SMS_GATEWAY_DEMO_PROVIDERS", raising=False)
    monkeypatch.setenv("SMS_GATEWAY_PROVIDERS", json.dumps({"twilio-us": TWILIO}))
    dsn = f"sqlite:///{tmp_path / 'ops.db'}"
    assert main(["migrate", "--dsn", dsn]) == 0
    direct = '{"default_provider": "provider-a"}'
    assert main(["policy", "acme", "direct", direct, "--dsn", dsn]) == 2
    assert "unknown provider(s) provider-a; the deployment declares twilio-us" in (
        capsys.readouterr().err
    )
    twilio = '{"default_provider": "twilio-us", "delivery": "at_least_once"}'
    assert main(["policy", "acme", "direct", twilio, "--dsn", dsn]) == 0
    engine = make_engine(dsn)
    try:
        policy = RoutePolicyRepository(engine).get("acme")
    finally:
        engine.dispose()
    assert policy is not None
    assert (policy.providers, policy.delivery) == (("twilio-us",), Delivery.AT_LEAST_ONCE)


def test_policy_refuses_invalid_provider_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret written into the configuration instead of referenced is refused by name."""
    monkeypatch.setenv(
        "SMS_GATEWAY_PROVIDERS", json.dumps({"t": {**TWILIO, "auth_secret": "plain-token"}})
    )
    dsn = f"sqlite:///{tmp_path / 'ops.db'}"
    assert main(["migrate", "--dsn", dsn]) == 0
    assert main(["policy", "acme", "direct", '{"default_provider": "t"}', "--dsn", dsn]) == 2
    err = capsys.readouterr().err
    assert "SMS_GATEWAY_PROVIDERS" in err
    assert "must reference a secret" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "70000"],  # would wrap silently
        ["--port", "-1"],  # would raise from the socket layer
        ["--port", "http"],
        ["--prewarm", "-1"],
    ],
)
def test_local_refuses_out_of_range_numbers_with_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["local", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert argv[1] in err


def test_local_accepts_the_whole_port_range() -> None:
    from sms_gateway.local.cli import build_parser

    for port in ("0", "65535"):
        assert build_parser().parse_args(["local", "--port", port]).port == int(port)


def test_local_with_an_unusable_database_says_so_in_one_line(tmp_path: Path) -> None:
    """A --dsn whose server refuses the connection (nothing listens on 127.0.0.1:1) stops the
    start with exit 1 and one line naming the database, not a traceback."""
    import os
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    dsn = "postgresql+pg8000://postgres@127.0.0.1:1/test"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_GATEWAY_", "AWS_"))}
    argv = ["local", "--port", "0", "--prewarm", "0", "--data-dir", str(tmp_path / "d")]
    run = subprocess.run(
        [sys.executable, "-m", "sms_gateway.local.cli", *argv, "--dsn", dsn],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    (line,) = [x for x in run.stderr.splitlines() if "cannot start" in x]
    assert line.startswith(f"sms-gateway local: cannot start: the SQL database {dsn} is not usable")


def test_policy_sets_a_tenants_retention_periods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """(issue 11) ``sms-gateway policy`` takes the payload's ``retention`` block; periods out
    of bounds are refused (exit 2) and leave the stored policy as it was."""
    from sms_gateway.domain.routing import TenantRetention
    from sms_gateway.storage.policies import SqlPolicyStore

    monkeypatch.setenv("SMS_GATEWAY_DEMO_PROVIDERS", "true")
    dsn = f"sqlite:///{tmp_path / 'ops.db'}"
    assert main(["migrate", "--dsn", dsn]) == 0
    good = (
        '{"default_provider": "provider-b",'
        ' "retention": {"redact_after_days": 7, "delete_after_days": 30}}'
    )
    bad = (
        '{"default_provider": "provider-b",'
        ' "retention": {"redact_after_days": 7, "delete_after_days": 10}}'
    )
    assert main(["policy", "acme", "direct", good, "--dsn", dsn]) == 0
    assert main(["policy", "acme", "direct", bad, "--dsn", dsn]) == 2
    assert "delete_after_days" in capsys.readouterr().err
    engine = make_engine(dsn)
    try:
        assert SqlPolicyStore(engine).retention_periods() == {"acme": TenantRetention(7, 30)}
    finally:
        engine.dispose()
