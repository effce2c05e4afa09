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
    "SenderFunction": {"boto3", "phonenumbers", "aws_lambda_powertools.event_handler"},
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
