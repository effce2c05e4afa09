"""``make test`` runs one pytest-xdist worker per CPU this process may run on, and one more
(the Makefile's TEST_WORKERS): not one per CPU of the machine. A CI job pinned to a few
CPUs of a large host (``taskset``, ``docker --cpuset-cpus``) must not start a worker, and a
local stack or two, per host CPU. (xdist's ``-n auto``, the default before, counted the
CPUs of the process's affinity mask.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT


@pytest.mark.skipif(
    shutil.which("make") is None or not hasattr(os, "sched_setaffinity"),
    reason="needs make and sched_setaffinity",
)
def test_make_test_counts_the_cpus_it_may_use() -> None:
    one = min(os.sched_getaffinity(0))
    pinned = (
        "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); "
        "os.execvp('make', sys.argv[2:])"
    )
    dry_run = subprocess.run(
        [sys.executable, "-c", pinned, str(one), "make", "--no-print-directory", "-n", "test"],
        cwd=REPO_ROOT,
        env={key: value for key, value in os.environ.items() if key != "TEST_WORKERS"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    workers = re.search(r"pytest .* -n (\d+)", dry_run)
    assert workers is not None, dry_run
    assert workers.group(1) == "2"
