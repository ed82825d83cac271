"""The shape of the code, measured from its syntax tree (issue 30's acceptance 3).

* no module imports a private name (``_x``) of another stage;
* (upstream private APIs appear in ``dicom_dask/compat.py`` only: checked by
  ``test_upstream_privates.py``)
* no function is over 80 lines of code (its signature and docstring aside, blank and
  comment lines not counted);
* no module is over 800 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dicom_dask

PACKAGE = Path(dicom_dask.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 800


def _ids(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(segment: str) -> bool:
    return segment.startswith("_") and not segment.startswith("__")


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[0] == "dicom_dask") else None


def _imported(path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The dotted names an import statement brings in (``module.name`` for ``from``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        own = _module(path)
        package = own if path.name == "__init__.py" else own.rsplit(".", 1)[0]
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        module = f"{base}.{node.module}" if node.module else base
    else:
        module = node.module or ""
    return [f"{module}.{alias.name}" for alias in node.names]


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    body = node.body
    first = body[0]
    docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    if docstring:
        if len(body) == 1:
            return 0
        first = body[1]
    start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
    assert node.end_lineno is not None
    code = (line.strip() for line in lines[start - 1 : node.end_lineno])
    return sum(1 for line in code if line and not line.startswith("#"))


def private_imports_across_stages(path: Path, text: str) -> list[str]:
    """Imports of private ``dicom_dask`` names from another stage (or from the top level)."""
    own = _stage(_module(path))
    bad = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for name in _imported(path, node):
            parts = name.split(".")
            if parts[0] != "dicom_dask" or not any(_private(p) for p in parts[1:]):
                continue
            if own is None or _stage(name) != own:
                bad.append(f"line {node.lineno}: {name}")
    return bad


def long_functions(path: Path, text: str) -> list[str]:
    """Functions with more than `MAX_FUNCTION_LINES` lines of code."""
    lines = text.splitlines()
    return [
        f"{node.name} (line {node.lineno}): {n} lines"
        for node in ast.walk(ast.parse(text, filename=str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (n := _code_lines(node, lines)) > MAX_FUNCTION_LINES
    ]


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_no_private_import_across_stages(path: Path) -> None:
    bad = private_imports_across_stages(path, path.read_text())
    assert not bad, f"{_module(path)} imports private names of another stage: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_functions_are_at_most_80_lines_of_code(path: Path) -> None:
    long = long_functions(path, path.read_text())
    assert not long, f"{_module(path)}: functions over {MAX_FUNCTION_LINES} lines of code: {long}"


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_modules_are_at_most_800_lines(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{_module(path)} has {n} lines"


def test_the_checks_see_what_they_look_for() -> None:
    # each check must be able to fail: feed it the cases it exists for
    fake = PACKAGE / "images" / "fake_for_the_check.py"
    source = (
        "from dicom_dask.chunks.reader import _pool\n"
        "from dicom_dask.images.lazy import _own_stage_is_fine\n"
        'def g():\n    """doc"""\n' + "    x = 1\n" * 81 + "    # a comment\n\n"
    )
    assert private_imports_across_stages(fake, source) == ["line 1: dicom_dask.chunks.reader._pool"]
    assert long_functions(fake, source) == ["g (line 3): 81 lines"]
    assert long_functions(fake, source.replace("    x = 1\n", "", 1)) == []
