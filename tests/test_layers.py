"""The subpackages' layer order: the import-linter contract in pyproject.toml holds, it would
catch a lower layer importing a higher one, and each subpackage's docstring says the truth about
what it may import."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    return contract


def _layers() -> list[list[str]]:
    """Top to bottom; independent siblings share a row."""
    return [[name.strip() for name in row.split("|")] for row in _contract()["layers"]]


def _lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(where / "pyproject.toml")],
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": ""},
        capture_output=True,
        text=True,
    )


def _copy_of_the_package(where: Path) -> None:
    shutil.copytree(ROOT / "vabcli", where / "vabcli", ignore=shutil.ignore_patterns("weights"))
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")


def test_the_package_keeps_its_layers():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("importer", "imported"),
    [("core/errors.py", "vabcli.cli.common"), ("model/towers.py", "vabcli.training.trainer")],
)
def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path, importer, imported):
    _copy_of_the_package(tmp_path)
    module = tmp_path / "vabcli" / importer
    # inside a function, as the lazy imports are: the contract sees those too
    module.write_text(module.read_text() + f"\n\ndef _late():\n    import {imported}  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode == 1 and "BROKEN" in done.stdout, done.stdout
    assert imported in done.stdout


def test_generation_and_tasks_stay_independent(tmp_path):
    _copy_of_the_package(tmp_path)
    module = tmp_path / "vabcli" / "tasks" / "retrieval.py"
    module.write_text(module.read_text() + "\nimport vabcli.generation.windows  # noqa\n")
    assert _lint(tmp_path).returncode == 1


def _said_imports(package: str) -> set[str]:
    init = ROOT / package.replace(".", "/") / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    said = doc.partition("May import:")[2].strip().rstrip(".")
    assert said, f"{init} does not say what it may import"
    return {name.strip() for name in said.split(",")}


def test_each_subpackage_says_which_layers_it_may_import():
    layers = _layers()
    for i, row in enumerate(layers):
        below = {name for lower in layers[i + 1 :] for name in lower}
        for package in row:
            if not (ROOT / package.replace(".", "/")).is_dir():
                continue  # a module (vabcli.api, vabcli.config): no __init__ docstring to check
            assert _said_imports(package) == below, package


def test_every_subpackage_is_in_the_layers():
    named = {name for row in _layers() for name in row}
    packages = {f"vabcli.{p.parent.name}" for p in (ROOT / "vabcli").glob("*/__init__.py")}
    assert packages <= named, packages - named
