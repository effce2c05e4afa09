"""The ingest function has no database (DESIGN section 2): loading and calling it must not
import SQLAlchemy or a database driver, with X-Ray tracing off or on as deployed.

Powertools' Tracer used to patch every library aws-xray-sdk supports, and patching imports the
library: with tracing on, ingest loaded SQLAlchemy, pg8000 and PyMySQL at every cold start.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sms_gateway.local.template import Resolver, SamTemplate
from tests.support import REPO_ROOT

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("ingest_app", "functions/ingest/app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
at_import = sorted(m for m in SQL if m in sys.modules)

class Context:  # what Powertools reads of the Lambda context
    function_name = "IngestFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:IngestFunction"
    aws_request_id = "r-1"

# The sample's API key maps to tenant-1: the resolver (TenantsTable's adapter, its DynamoDB
# client) is built as on a first request, its cache holding the answer of the GetItem this
# probe does not make (no AWS request is made).
from sms_gateway import wiring
wiring.tenant_keys()._cache["tenant-1"] = "tenant-1"

# an invalid body: routing, validation and the idempotency wiring run, no AWS request is made
with open("events/ingest-post-message-invalid.json") as f:
    answer = module.lambda_handler(json.load(f), Context())
from aws_xray_sdk.core.patcher import _PATCHED_MODULES

print(json.dumps({
    "status": answer["statusCode"],
    "sql_at_import": at_import,
    "sql_after_request": sorted(m for m in SQL if m in sys.modules),
    "patched": sorted(_PATCHED_MODULES),
    "tracing": not module.tracer.disabled,
}))
"""
SQL = ("sqlalchemy", "pg8000", "pymysql", "alembic", "sqlite3", "psycopg2", "psycopg")

LAMBDA_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "PATH": "",
}


def deployed_environment() -> dict[str, str]:
    """The template's Globals environment with its parameter defaults (POWERTOOLS_*, ...)."""
    template = SamTemplate.from_file(REPO_ROOT / "template.yaml")
    variables = Resolver(template).resolve(template.function_globals["Environment"]["Variables"])
    return {name: str(value) for name, value in variables.items()}


# As Lambda sets them with Tracing: Active (the X-Ray daemon address, the context-missing
# strategy, the task root Powertools looks for, the invocation's trace header).
TRACING_ON = {
    "LAMBDA_TASK_ROOT": str(REPO_ROOT / "functions" / "ingest"),
    "AWS_LAMBDA_FUNCTION_NAME": "IngestFunction",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "_X_AMZN_TRACE_ID": (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    ),
}


@pytest.mark.parametrize("tracing", [False, True], ids=["tracing-off", "tracing-on"])
def test_ingest_imports_no_sql(tracing: bool) -> None:
    env = {
        **deployed_environment(),
        **LAMBDA_ENV,
        **(TRACING_ON if tracing else {"POWERTOOLS_TRACE_DISABLED": "true"}),
    }
    env["SMS_GATEWAY_TENANTS_TABLE"] = "sms-gateway-TenantsTable"  # as IngestFunction has it
    # this checkout's package, first (as the layer's /opt/python is in Lambda)
    env["PYTHONPATH"] = str(REPO_ROOT / "layers")
    run = subprocess.run(
        [sys.executable, "-c", f"SQL = {SQL!r}\n{PROBE}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["tracing"] is tracing
    assert result["status"] == 422  # the request went through validation
    assert result["sql_at_import"] == []
    assert result["sql_after_request"] == []
    # tracing on: AWS calls are traced, and nothing else is patched (or imported for it)
    assert result["patched"] == (["botocore"] if tracing else [])
