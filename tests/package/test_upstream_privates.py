"""Upstream private APIs are used in one module only: ``dicom_dask/compat.py``.

Checked on the AST of every other module of the package (module level and inside
functions), for names of any package other than dicom_dask (pydicom, highdicom, dask,
zarr, numcodecs, fsspec, s3fs, aiohttp, the standard library...):

* imports of a private module or name: ``import pkg._mod``, ``from pkg._mod import x``,
  ``from pkg import _x``;
* attributes of an imported module or name: ``pkg._x``, ``pkg.sub._x`` after
  ``import pkg`` / ``import pkg.sub as alias`` / ``from pkg import sub``, and
  ``Name._x`` after ``from pkg import Name`` (a class or function of the package);
* ``getattr`` / ``hasattr`` / ``setattr`` / ``delattr`` with a literal private name
  (``getattr(transform, "_invert")``) on anything but ``self`` / ``cls``: the object
  it reads is usually an upstream one, and such strings are how private attributes
  are read without an attribute expression.

Not detectable from the AST, hence not checked: ``obj._x`` on a value whose type is
not known where it is used (a parameter, a return value); subclasses of upstream
classes overriding or calling the hooks their base class documents for subclassing
(zarr's ``Store._open`` / ``_check_writable``, a codec's ``_decode_sync``, dask
``Array._meta`` on ``self``). Dunder names and a named tuple's public ``_replace``,
``_asdict``, ``_fields``, ``_make`` are not private.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dicom_dask

PACKAGE = Path(dicom_dask.__file__).parent
COMPAT = PACKAGE / "compat.py"
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
ATTR_FUNCTIONS = {"getattr", "hasattr", "setattr", "delattr"}


def _private(name: str) -> bool:
    return (
        name.startswith("_")
        and not (name.startswith("__") and name.endswith("__"))
        and name not in PUBLIC_UNDERSCORED
    )


def _upstream(module: str | None, level: int) -> bool:
    return level == 0 and module is not None and module.split(".")[0] != "dicom_dask"


def _bound_upstream_names(tree: ast.AST) -> set[str]:
    """Local names bound to upstream modules, classes or functions by imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _upstream(alias.name, 0):
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and _upstream(node.module, node.level):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def upstream_private_uses(source: str, where: str) -> list[str]:
    """Every use of an upstream private name in the module ``source``, as
    ``where:line: what``."""
    tree = ast.parse(source, filename=where)
    bound = _bound_upstream_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if _upstream(a.name, 0)]
            bad = [n for n in bad if any(_private(p) for p in n.split("."))]
            what = f"import {', '.join(bad)}" if bad else None
        elif isinstance(node, ast.ImportFrom) and _upstream(node.module, node.level):
            module = node.module or ""
            names = [a.name for a in node.names if _private(a.name)]
            if any(_private(p) for p in module.split(".")) or names:
                what = f"from {module} import {', '.join(a.name for a in node.names)}"
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if _root(node.value) in bound:
                what = f"{ast.unparse(node)}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTR_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"))
        ):
            what = ast.unparse(node)
        if what:
            found.append(f"{where}:{node.lineno}: {what}")
    return found


def test_upstream_private_apis_only_in_compat() -> None:
    found = [
        use
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != COMPAT
        for use in upstream_private_uses(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    ]
    assert not found, "upstream private APIs outside dicom_dask/compat.py:\n" + "\n".join(found)


def test_the_check_finds_each_kind_of_use() -> None:
    """The checker flags every form it documents, and leaves the allowed ones."""
    sample = (
        "import dask._task_spec\n"
        "from pydicom.pixels.utils import _get_jpg_parameters\n"
        "from highdicom import image\n"
        "from fsspec.implementations.local import LocalFileSystem\n"
        "import pydicom.pixels as px\n"
        "from dicom_dask.chunks import _private_of_the_package\n"
        "image._CombinedPixelTransform\n"
        "px.decoders._x\n"
        "LocalFileSystem._strip_protocol('x')\n"
        "getattr(obj, '_invert', False)\n"
        "getattr(self, '_own', None)\n"
        "info._replace(x=1)\n"
        "image.__name__\n"
        "obj._unknown_type\n"
    )
    found = [use.split(": ", 1)[1] for use in upstream_private_uses(sample, "sample.py")]
    assert sorted(found) == sorted(
        [
            "import dask._task_spec",
            "from pydicom.pixels.utils import _get_jpg_parameters",
            "image._CombinedPixelTransform",
            "px.decoders._x",
            "LocalFileSystem._strip_protocol",
            "getattr(obj, '_invert', False)",
        ]
    )
