"""Write (or, with --check, compare) docs/openapi.json from both API functions' routes.

``make openapi`` runs it; the unit test ``tests/unit/test_openapi.py`` runs the comparison.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "openapi.json"


def _function(name: str) -> ModuleType:
    """``functions/<name>/app.py`` (each function is its own package root in Lambda)."""
    spec = importlib.util.spec_from_file_location(
        f"openapi_{name}_app", ROOT / "functions" / name / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated() -> str:
    """The document as generated from the code now."""
    from sms_gateway.api.openapi import render

    return render([*_function("ingest").app.routes, *_function("status").app.routes])


def main() -> int:
    text = generated()
    if "--check" in sys.argv[1:]:
        if DOCUMENT.read_text(encoding="utf-8") != text:
            print(f"{DOCUMENT.relative_to(ROOT)} is out of date: run make openapi")
            return 1
        return 0
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
