"""The Lambda build (layers/Makefile, run by ``sam build``) ships bytecode Lambda uses as is.

The recipe is exercised on tiny trees (no network: an empty requirements file), and the real
``.aws-sam/build`` is checked when a build is present (``make build`` checks it too).
"""

from __future__ import annotations

import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.build_output import PY312_MAGIC, UNCHECKED_HASH, pyc_problem
from tests.support import REPO_ROOT

MAKEFILE = REPO_ROOT / "layers" / "Makefile"
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(target: str, cwd: Path, artifacts: Path) -> None:
    subprocess.run(
        ["make", "--makefile", str(MAKEFILE), target, f"PYTHON={sys.executable}"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "ARTIFACTS_DIR": str(artifacts)},
        check=True,
        capture_output=True,
    )


def run_python(path: Path, code: str) -> str:
    """``code``'s output in a fresh interpreter that writes no bytecode, ``path`` first."""
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_py312_magic_is_the_running_interpreters_when_it_is_312() -> None:
    import importlib.util

    if sys.version_info[:2] != (3, 12):
        pytest.skip("the constant is checked against a 3.12 interpreter")
    assert importlib.util.MAGIC_NUMBER == PY312_MAGIC


@needs_make
def test_layer_target_compiles_unchecked_hash_bytecode(tmp_path: Path) -> None:
    source = tmp_path / "src"
    package = source / "sms_gateway"
    package.mkdir(parents=True)
    (source / "requirements.txt").write_text("# nothing to install\n", encoding="utf-8")
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "value.py").write_text("VALUE = 'built'\n", encoding="utf-8")
    # a developer's stale timestamp pyc must not reach the artifact
    py_compile.compile(str(package / "value.py"))
    artifacts = tmp_path / "out"

    make("build-DependenciesLayer", source, artifacts)

    layer = artifacts / "python"
    built = layer / "sms_gateway" / "value.py"
    assert pyc_problem(built) is None
    assert check_tree(layer) == 2
    # Unchecked: a changed source (new text, new mtime) is not even looked at.
    built.write_text("VALUE = 'edited after the build'\n", encoding="utf-8")
    code = "import sms_gateway.value as v; print(v.VALUE, v.__spec__.cached is not None)"
    assert run_python(layer, code) == "built True"
    # Tracebacks name the module where Lambda mounts the layer, not the build directory.
    code = "import marshal; d = open(%r, 'rb').read(); print(marshal.loads(d[16:]).co_filename)"
    pyc = built.parent / "__pycache__" / "value.cpython-312.pyc"
    assert run_python(layer, code % str(pyc)) == "/opt/python/sms_gateway/value.py"


@needs_make
def test_function_target_compiles_app(tmp_path: Path) -> None:
    source = tmp_path / "ingest"
    source.mkdir()
    (source / "app.py").write_text("def lambda_handler(event, context):\n    return 1\n")
    (source / "requirements.txt").write_text("\n", encoding="utf-8")
    artifacts = tmp_path / "out"

    make("build-IngestFunction", source, artifacts)

    assert sorted(p.name for p in artifacts.iterdir()) == ["__pycache__", "app.py"]
    assert pyc_problem(artifacts / "app.py") is None


def check_tree(root: Path) -> int:
    sources = sorted(root.rglob("*.py"))
    assert [pyc_problem(s) for s in sources] == [None] * len(sources)
    return len(sources)


def test_timestamp_and_missing_bytecode_are_problems(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("X = 1\n", encoding="utf-8")
    assert "no m.cpython-312.pyc" in str(pyc_problem(module))
    py_compile.compile(str(module), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    if sys.version_info[:2] == (3, 12):
        assert "flags 0b00" in str(pyc_problem(module))
    py_compile.compile(str(module), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if sys.version_info[:2] == (3, 12):
        assert pyc_problem(module) is None
        header = (tmp_path / "__pycache__" / "m.cpython-312.pyc").read_bytes()[:8]
        assert int.from_bytes(header[4:], "little") == UNCHECKED_HASH


def test_template_builds_layer_and_functions_with_the_makefile() -> None:
    from sms_gateway.local.template import SamTemplate

    template = SamTemplate.from_file(REPO_ROOT / "template.yaml")
    layer = template.resources["DependenciesLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "x86_64"}
    assert layer["Properties"]["ContentUri"] == "layers/"
    makefile = MAKEFILE.read_text(encoding="utf-8")
    for logical_id, resource in template.resources_of_type("AWS::Serverless::Function").items():
        assert resource["Metadata"] == {"BuildMethod": "makefile", "ContextPath": "layers"}
        assert logical_id.endswith("Function")  # matched by the build-%Function rule
    assert "build-DependenciesLayer:" in makefile
    assert "build-%Function:" in makefile
    assert "--invalidation-mode unchecked-hash" in makefile
