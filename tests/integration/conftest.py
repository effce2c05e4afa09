"""Fixtures of the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.throwaway import write_throwaway_root


@pytest.fixture
def throwaway_root(tmp_path: Path) -> Path:
    """A repository root holding THROWAWAY_TEMPLATE and its handlers (see
    :func:`tests.integration.throwaway.write_throwaway_root`)."""
    return write_throwaway_root(tmp_path)
