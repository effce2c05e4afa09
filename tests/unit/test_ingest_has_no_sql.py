"""The ingest function has no database (DESIGN section 2): loading and calling it must not
import SQLAlchemy or a database driver."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO_ROOT

PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("ingest_app", "functions/ingest/app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from sms_gateway import wiring  # noqa: F401  (what the handler calls at run time)
import sms_gateway.services.ingest  # noqa: F401
print(sorted(m for m in ("sqlalchemy", "pg8000", "pymysql", "alembic") if m in sys.modules))
"""


def test_ingest_imports_no_sql() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": ""},
    ).stdout
    assert out.strip() == "[]"
