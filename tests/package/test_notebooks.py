"""The notebooks run top to bottom (nbclient) and are stored with the figures they make."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docs, pytest.mark.slow]

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def _pngs(notebook) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    # the kernel works in tmp_path and its temporary folders (the notebooks' tempfile.mkdtemp,
    # dask's scratch space) go there too: nothing lands in the repo or the system temp folder
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env={**os.environ, "TMPDIR": str(scratch)})
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    silent = [cell.source[:40] for cell in code if not cell.outputs]
    assert code and not silent, silent
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    stored = nbformat.read(path, as_version=4)
    # a run makes at least the figures that the stored copy shows
    assert _pngs(notebook) >= _pngs(stored) > 0


def test_notebooks_are_stored_with_their_figures() -> None:
    """Stored outputs come from a full run (every code cell executed, in order, no error) and hold
    the figures: at least 10 PNG images across the notebooks."""
    total = 0
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        counts = [cell.execution_count for cell in code]
        assert counts == list(range(1, len(code) + 1)), f"{path.name}: not run top to bottom"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], path.name
        total += _pngs(notebook)
    assert total >= 10, total
