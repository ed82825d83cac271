"""Execute the notebooks in place so that the stored outputs (figures included) are fresh.

The notebooks in ``notebooks/`` are stored with their outputs, so that GitHub, Jupyter and the docs
site (mkdocs-jupyter, which does not execute them) show the figures. Run this after editing one::

    PYTHONPATH=. python docs/tools/run_notebooks.py                 # all of them
    PYTHONPATH=. python docs/tools/run_notebooks.py notebooks/slide_tour.ipynb

Each runs top to bottom in a fresh kernel, in a temporary working folder that also holds its
temporary files (removed after); the time it took and the number of PNG figures it holds are
printed. ``tests/package/test_notebooks.py`` executes them the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def execute(path: Path, *, timeout: int = 300):  # -> nbformat.NotebookNode
    """Run one notebook top to bottom (in a temporary folder) and return it with its outputs."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as folder:
        # the kernel's own temporary folders (the notebooks' tempfile.mkdtemp) go inside
        # ``folder`` too, so that they are removed with it
        scratch = Path(folder, "tmp")
        scratch.mkdir()
        client = nbclient.NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": folder}},
        )
        client.execute(env={**os.environ, "TMPDIR": str(scratch)})
    return notebook


def figures(notebook) -> int:
    """How many PNG images a notebook's outputs hold."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def main(argv: list[str]) -> int:
    import nbformat

    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        notebook = execute(path)
        for cell in notebook.cells:  # kernel-specific noise that changes on every run
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(notebook, path)
        print(f"{path.name}: {time.perf_counter() - start:.1f} s, {figures(notebook)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
