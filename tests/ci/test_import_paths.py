"""No Python file of the repository changes the import path or loads a project file by its path.

Shared test and dev code is the installed package wp_devsupport (devsupport/, `make venv`); test
modules import each other only through it (pytest runs with --import-mode=importlib, which puts no
test directory on the import path). Build tooling under ci/ is run as a command, never imported.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from wp_devsupport.repo import REPO

_IMPORT_PATH = "sys" + ".path"
#: What changes the import path, or imports a file by its location instead of its module name.
FORBIDDEN = {
    re.compile(r"\bsys\s*\.\s*path\b"): f"changes or reads the import path ({_IMPORT_PATH})",
    re.compile(r"\bsite\s*\.\s*addsitedir\b"): "adds a directory to the import path",
    re.compile(r"\bspec_from_file_location\b"): "loads a module from a file path (importlib.util)",
    re.compile(r"\bSourceFileLoader\b"): "loads a module from a file path (importlib.machinery)",
    re.compile(r"\brun_path\s*\("): "runs a file by its path (runpy)",
    re.compile(r"\bload_source\s*\("): "loads a module from a file path (imp)",
}


def path_hacks(text: str) -> list[str]:
    """`line N: what` for every forbidden construct in a Python source text."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern, what in FORBIDDEN.items():
            if pattern.search(line):
                found.append(f"line {number}: {what}: {line.strip()}")
    return found


def python_files() -> list[Path]:
    """Every Python file of the checkout: tracked, or new and not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [REPO / name for name in listed.split("\0") if name and (REPO / name).is_file()]


def test_no_python_file_changes_the_import_path_or_loads_files_by_path() -> None:
    files = python_files()
    assert len(files) > 50, f"git listed only {len(files)} Python files: is {REPO} the checkout?"
    problems = [
        f"{path.relative_to(REPO)} {problem}"
        for path in files
        for problem in path_hacks(path.read_text(encoding="utf-8"))
    ]
    assert not problems, (
        "import shared code from the installed package wp_devsupport (devsupport/) and run build tooling "
        "as a command instead:\n" + "\n".join(problems)
    )


def test_modules_import_each_other_only_through_packages() -> None:
    """No module imports a module of tests/ (a sibling helper, a conftest, another test), and no test
    module imports relatively: what tests share lives in wp_devsupport."""
    files = python_files()
    tests = REPO / "tests"
    test_modules = {path.stem for path in files if path.is_relative_to(tests)}
    assert {"conftest", "test_import_paths"} <= test_modules
    problems = []
    for path in files:
        where = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                if path.is_relative_to(tests):
                    problems.append(f"{where}:{node.lineno}: relative import from {node.module or '.'}")
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            problems += [
                f"{where}:{node.lineno}: imports {name}, a module of tests/"
                for name in names
                if name.split(".")[0] in test_modules
            ]
    assert not problems, "move what tests share into wp_devsupport (devsupport/) and import it from there:\n" + (
        "\n".join(problems)
    )


@pytest.mark.parametrize(
    "line",
    [
        _IMPORT_PATH + ".insert(0, str(REPO / 'tests'))",
        _IMPORT_PATH + ".append('ci')",
        _IMPORT_PATH + "[:0] = ['x']",
        "spec = importlib.util.spec_from_" + "file_location('m', path)",
        "importlib.machinery.Source" + "FileLoader('m', path).load_module()",
        "runpy.run_" + "path('ci/demo.py')",
        "site." + "addsitedir('tests')",
    ],
)
def test_the_check_finds_each_kind_of_path_hack(line: str) -> None:
    (found,) = path_hacks(f"import sys\n\n{line}\n")
    assert found.startswith("line 3: ")
    assert found.endswith(line)


def test_the_check_leaves_name_imports_alone() -> None:
    assert (
        path_hacks("import importlib\nfrom wp_devsupport.chart import CHART\nmodule = importlib.import_module('x')\n")
        == []
    )


def test_pytest_adds_no_test_directory_to_the_import_path() -> None:
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"][
        "ini_options"
    ]
    assert "pythonpath" not in pytest_options, "pyproject.toml: drop [tool.pytest.ini_options] pythonpath"
    assert "--import-mode=importlib" in pytest_options["addopts"].split(), (
        "pyproject.toml: pytest must run with --import-mode=importlib (the default, prepend, puts every test "
        "directory on the import path)"
    )
