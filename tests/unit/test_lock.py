"""The layer's lock (layers/requirements.txt, made by `make lock` from requirements.in) is
complete, hashed and in step with requirements.in and pyproject.toml. Offline: `make
lock-check` (CI) is the full check, a fresh resolution compared with the file."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import REPO_ROOT

LAYERS = REPO_ROOT / "layers"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)")


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = requirement
    return found


def _lock() -> tuple[dict[str, Version], dict[str, int], set[str], str]:
    """pins name -> version, hashes per name, names required by requirements.in, header."""
    text = (LAYERS / "requirements.txt").read_text(encoding="utf-8")
    pins: dict[str, Version] = {}
    hashes: dict[str, int] = {}
    top_level: set[str] = set()
    current = ""
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            pins[current] = Version(match[2])
            hashes[current] = 0
        elif "--hash=sha256:" in line:
            hashes[current] += 1
        elif re.search(r"#\s+(via )?-r requirements\.in", line):
            top_level.add(current)
    return pins, hashes, top_level, text


def test_every_locked_package_is_pinned_and_hashed() -> None:
    pins, hashes, _, text = _lock()
    assert len(pins) >= 20  # the layer's whole tree, not only the direct dependencies
    assert all(count >= 1 for count in hashes.values()), hashes
    # nothing installs from an unpinned line (pip --require-hashes refuses those anyway)
    body = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert all(_PIN.match(line) for line in body), body
    assert "make lock" in text.splitlines()[1]


def test_the_lock_satisfies_requirements_in_and_pyproject() -> None:
    pins, _, top_level, _ = _lock()
    wanted = _requirements((LAYERS / "requirements.in").read_text(encoding="utf-8").splitlines())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = _requirements(project["project"]["dependencies"])
    assert set(wanted) == set(declared)
    # requirements.in's direct dependencies are the lock's (a line added there without
    # `make lock` is missing here; one removed there still shows "-r requirements.in")
    assert top_level == set(wanted)
    for name in wanted:
        assert pins[name] in wanted[name].specifier, (name, pins[name], wanted[name])
        assert pins[name] in declared[name].specifier, (name, pins[name], declared[name])
    # extras' dependencies are locked too (powertools[tracer] -> aws-xray-sdk)
    assert "aws-xray-sdk" in pins


def test_the_lock_date_is_where_make_lock_reads_it() -> None:
    """uv --exclude-newer takes an RFC 3339 timestamp; `make lock` seds it out of this line."""
    text = (LAYERS / "requirements.in").read_text(encoding="utf-8")
    assert len(re.findall(r"^# lock-date: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", text, re.M)) == 1
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "sed -n 's/^\\# lock-date: *//p' layers/requirements.in" in makefile
    assert '--exclude-newer "$(LOCK_DATE)"' in makefile


def test_the_build_installs_only_the_hashed_lock() -> None:
    makefile = (LAYERS / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("build-DependenciesLayer: check-python", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes" in recipe
    assert "-r requirements.txt" in recipe
    assert "requirements.in" not in recipe
    # and still refuses a Python other than the runtime's
    assert "sys.version_info[:2] == (3, 12)" in makefile
