"""The package's folders are its data flow: each stage imports only from the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dicom_dask

PACKAGE = Path(dicom_dask.__file__).parent
STAGES = ("frames", "chunks", "images", "integrations")
# modules every stage may import: the exception hierarchy, the enumerations, the public
# types, the settings and the one module that touches upstream private APIs
SHARED = {
    "dicom_dask.errors",
    "dicom_dask.enums",
    "dicom_dask.types",
    "dicom_dask.config",
    "dicom_dask.compat",
}
HEAVY = ("dask", "distributed", "xarray", "napari")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module imported by ``path`` (module level and inside functions), with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _module_name(path).rsplit(".", 1)[0]
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            # ``from dicom_dask.chunks import store`` imports the submodule
            found.extend((f"{module}.{alias.name}", node.lineno) for alias in node.names)
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dicom_dask" or len(parts) < 2:
        return None
    return parts[1]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_four_stage_folders_and_testing_exist() -> None:
    for folder in (*STAGES, "testing"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder


def test_top_level_holds_at_most_seven_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 7, top


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_stage_imports_only_earlier_stages(path: Path) -> None:
    module = _module_name(path)
    stage = _stage(module)
    if stage not in STAGES:
        return
    rank = STAGES.index(stage)
    bad = []
    for imported, line in _imports(path):
        if imported in SHARED or any(imported.startswith(s + ".") for s in SHARED):
            continue
        target = _stage(imported)
        if imported.split(".")[0] == "dicom_dask":
            if target in STAGES and STAGES.index(target) <= rank:
                continue
            # the demo is the one runtime user of the synthetic writers
            if target == "testing" and module == "dicom_dask.integrations.cli":
                continue
            bad.append(f"line {line}: {imported}")
        elif rank < STAGES.index("images") and imported.split(".")[0] in HEAVY:
            bad.append(f"line {line}: {imported} (dask, xarray and napari start at images/)")
    assert not bad, f"{module} imports from a later stage or the top: {bad}"


def test_import_walker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    # the walker is what the layout test relies on: it must see imports inside functions
    path = PACKAGE / "frames" / "header.py"
    names = {m for m, _ in _imports(path)}
    assert "dicom_dask.errors" in names
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    import dask.array\n    from dicom_dask.images import slide\n")
    found = {m for m, _ in _imports(fake)}
    assert {"dask.array", "dicom_dask.images", "dicom_dask.images.slide"} <= found
