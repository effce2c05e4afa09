"""What each function's ``import app`` (Lambda's init) loads, with X-Ray tracing on as deployed.

Heavy modules load where first needed (issue 6): a function's module loads Powertools' logger,
metrics and tracer and what its handler's decorators need; boto3, pydantic, libphonenumber,
the event handler and the database driver load with the first request, through
``sms_gateway.wiring``. Nothing loads pydantic-settings, and no function loads a driver or a
library it does not use. ``bench/cold_figures.py`` measures what this saves.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

PROBE = "import json, sys, app; print(json.dumps(sorted(sys.modules)))"

NEVER = {"pydantic_settings", "dotenv", "alembic", "yaml", "pymysql", "pg8000", "sqlite3"}
LATER = {
    "IngestFunction": {
        "boto3",
        "botocore.client",
        "pydantic",
        "phonenumbers",
        "sqlalchemy",
        "aws_lambda_powertools.event_handler",
        "aws_lambda_powertools.utilities.idempotency",
    },
    # the status function loads its SQL stack at init (its first request has a 10 s Timeout)
    "StatusFunction": {"boto3", "phonenumbers", "aws_lambda_powertools.event_handler"},
    # the batch consumers' modules need SQLAlchemy and pydantic (their services' types)
    "SenderFunction": {
        "boto3",
        "phonenumbers",
        "aws_lambda_powertools.event_handler",
        # provider types load with the first request, and only the configured ones
        "sms_gateway.providers.simulator",
        "sms_gateway.providers.end_user_messaging",
        "sms_gateway.providers.sns",
        "sms_gateway.providers.twilio",
        "sms_gateway.providers.aggregator",
    },
    "DlqFunction": {"boto3", "phonenumbers", "aws_lambda_powertools.event_handler"},
}
DIRS = {
    "IngestFunction": "ingest",
    "StatusFunction": "status",
    "SenderFunction": "sender",
    "DlqFunction": "dlq",
}


@pytest.mark.parametrize("logical_id", sorted(LATER))
def test_import_app_loads_only_what_init_needs(logical_id: str) -> None:
    function_dir = REPO_ROOT / "functions" / DIRS[logical_id]
    env = {
        "PATH": "",
        "PYTHONPATH": f"{function_dir}:{REPO_ROOT / 'layers'}",
        "LAMBDA_TASK_ROOT": str(function_dir),  # Powertools traces only in Lambda
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "AWS_REGION": "us-east-1",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "POWERTOOLS_SERVICE_NAME": "sms-gateway",
        "POWERTOOLS_METRICS_NAMESPACE": "SmsGateway",
    }
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    loaded = set(json.loads(run.stdout.strip().splitlines()[-1]))
    assert "aws_xray_sdk.core" in loaded  # tracing is on, as deployed
    assert loaded & NEVER == set()
    assert loaded & LATER[logical_id] == set()


PROVIDER_MODULES = {
    "simulator": "sms_gateway.providers.simulator",
    "end_user_messaging": "sms_gateway.providers.end_user_messaging",
    "sns": "sms_gateway.providers.sns",
    "twilio": "sms_gateway.providers.twilio",
    "http": "sms_gateway.providers.aggregator",
}
ONE_OF_EACH = {
    "simulator": {"type": "simulator"},
    "end_user_messaging": {"type": "end_user_messaging", "origination_identity": "pool-1"},
    "sns": {"type": "sns"},
    "twilio": {
        "type": "twilio",
        "account_sid": "AC" + "0" * 32,
        "auth_secret": "ssm:/t",
        "from_number": "+12025550100",
    },
    "http": {"type": "http", "url": "https://agg.example", "signing_secret": "ssm:/a"},
}
REGISTRY_PROBE = (
    "import json, sys\n"
    "from sms_gateway.providers.config import build_registry, parse_providers\n"
    "build_registry(parse_providers(json.loads(sys.argv[1])))\n"
    "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sms_gateway.providers.'))))"
)


@pytest.mark.parametrize("kind", sorted(PROVIDER_MODULES))
def test_sender_imports_only_the_configured_provider_types(kind: str) -> None:
    """Declaring one type loads its module and no other type's (lazy imports per type)."""
    run = subprocess.run(
        [sys.executable, "-c", REGISTRY_PROBE, json.dumps({"p": ONE_OF_EACH[kind]})],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT / "layers"), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    loaded = set(json.loads(run.stdout.strip().splitlines()[-1]))
    assert loaded & set(PROVIDER_MODULES.values()) == {PROVIDER_MODULES[kind]}
