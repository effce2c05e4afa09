"""The e2e tests' local stack: ``sms-gateway local`` in a subprocess, driven over HTTP only
(plus SQS on moto's loopback endpoint, to inject a malformed record); see
:mod:`tests.local_cli` for the launcher and its bounds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.local_cli import Reply, Stack, local_stack

__all__ = ["Reply", "Stack", "local_stack"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One local stack for the session's e2e tests; it must stop cleanly (exit 0) on SIGINT."""
    with local_stack(tmp_path_factory.mktemp("local-stack")) as (proc, running, _):
        yield running
    assert proc.returncode == 0
