"""The shared expected values (``../shared/cases``), loaded once for every test layer.

The folder is found beside the repository (``<repo>/../shared/cases``) or at
``$SMS_GATEWAY_CASES_DIR``; a vendored copy in ``tests/cases`` is the fallback so a clone
outside this workspace still tests the same values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def cases_dir() -> Path:
    """Where ``content.json`` and ``phones.json`` live."""
    candidates = [
        Path(os.environ["SMS_GATEWAY_CASES_DIR"])
        if os.environ.get("SMS_GATEWAY_CASES_DIR")
        else None,
        REPO_ROOT.parent / "shared" / "cases",
        REPO_ROOT / "tests" / "cases",
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "content.json").is_file():
            return candidate
    raise FileNotFoundError("shared cases not found (set SMS_GATEWAY_CASES_DIR)")


def load(name: str) -> list[dict[str, Any]]:
    """The ``cases`` list of ``<name>.json``."""
    data = json.loads((cases_dir() / f"{name}.json").read_text(encoding="utf-8"))
    cases: list[dict[str, Any]] = data["cases"]
    return cases


CONTENT_CASES = load("content")
PHONE_CASES = load("phones")
