"""Checks of the ``sam build`` output: every module ships its bytecode, compiled for Lambda.

What Lambda's python3.12 runtime uses as it is, from a read-only layer (PEP 552,
``importlib._bootstrap_external``): ``<dir>/__pycache__/<module>.cpython-312.pyc`` next to each
``.py``, whose header is the 3.12 magic number then flags ``0b01`` (hash-based, source not
checked). A timestamp pyc (flags 0) is compared with the source's mtime, which zip extraction
does not keep; a checked-hash pyc (flags 0b11) makes every import read and hash its source.

Usage: ``python -m tests.build_output [BUILD_DIR]`` (default ``.aws-sam/build``); exits 1 and
names the problems if there are any. ``make build`` runs it after ``sam build``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# CPython 3.12's bytecode magic number (Lib/importlib/_bootstrap_external.py, MAGIC_NUMBER for
# 3.12: 3531). Written here, not read from the running interpreter, so that a check run by
# another Python version still checks for the runtime's.
PY312_MAGIC = (3531).to_bytes(2, "little") + b"\r\n"
UNCHECKED_HASH = 0b01
CACHE_TAG = "cpython-312"
TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


def artifacts() -> tuple[str, ...]:
    """The layer's ``python/`` and every function of template.yaml (a function added to the
    template is checked without editing this file)."""
    from sms_gateway.local.template import SamTemplate

    functions = SamTemplate.from_file(TEMPLATE).resources_of_type("AWS::Serverless::Function")
    return ("DependenciesLayer/python", *sorted(functions))


def pyc_problem(source: Path) -> str | None:
    """Why ``source``'s bytecode would not be used as it is on python3.12 (None: it would)."""
    pyc = source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"
    if not pyc.is_file():
        return f"{source}: no {pyc.name}"
    with pyc.open("rb") as handle:
        header = handle.read(8)
    if header[:4] != PY312_MAGIC:
        return f"{pyc}: magic {header[:4]!r} is not CPython 3.12's {PY312_MAGIC!r}"
    flags = int.from_bytes(header[4:8], "little")
    if flags != UNCHECKED_HASH:
        return f"{pyc}: flags {flags:#04b}, want {UNCHECKED_HASH:#04b} (unchecked hash)"
    return None


def check(build_dir: Path) -> tuple[int, list[str]]:
    """``(sources checked, problems)`` over the layer's ``python/`` and each function."""
    problems: list[str] = []
    count = 0
    for artifact in artifacts():
        root = build_dir / artifact
        if not root.is_dir():
            problems.append(f"{root}: missing")
            continue
        for source in sorted(root.rglob("*.py")):
            count += 1
            if (problem := pyc_problem(source)) is not None:
                problems.append(problem)
    return count, problems


def main(argv: list[str]) -> int:
    build_dir = Path(argv[0] if argv else ".aws-sam/build")
    count, problems = check(build_dir)
    for problem in problems[:20]:
        print(problem)
    if problems:
        print(f"{len(problems)} of {count} modules lack usable python3.12 bytecode")
        return 1
    print(f"build output: {count} modules, each with unchecked-hash python3.12 bytecode")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
