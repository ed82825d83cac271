"""``dicom-dask demo``: it passes its own checks and leaves nothing behind unless asked to."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from dicom_dask.integrations.cli import main


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that the process takes as its temporary folder (``TMPDIR``)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    assert tempfile.gettempdir() == str(folder)
    return folder


def test_demo_removes_its_temporary_files(scratch: Path, capsys) -> None:
    assert main(["demo", "--frames", "25"]) == 0
    out = capsys.readouterr().out
    assert "wrote " in out and "demo-tiles.dcm" in out
    assert "gives the same pixels: True" in out and "level 1 identical: True" in out
    assert f"removed {scratch}" in out
    assert list(scratch.iterdir()) == []


def test_demo_keeps_what_it_writes_in_the_named_folder(
    scratch: Path, tmp_path: Path, capsys
) -> None:
    dest = tmp_path / "demo"
    assert main(["demo", "--frames", "9", "--output", str(dest)]) == 0
    assert "removed" not in capsys.readouterr().out
    names = {p.name for p in dest.iterdir()}
    assert names == {"demo-tiles.dcm", "demo-slide", "demo-slide.ome.zarr", "demo-ct"}
    assert len(list((dest / "demo-ct").iterdir())) == 64
    assert list(scratch.iterdir()) == []


def test_demo_refuses_no_frames(capsys) -> None:
    assert main(["demo", "--frames", "0"]) == 1
    assert "--frames must be at least 1" in capsys.readouterr().err
