"""The DICOM writers refuse to replace files unless ``overwrite=True``.

A second write to the same destination raises `DestinationExistsError` before
anything is computed or written (the first output stays byte for byte); with
``overwrite=True`` (or ``options=WriteOptions(overwrite=True)``) it replaces it.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import pydicom
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.errors import DestinationExistsError
from dicom_dask.integrations.cli import main
from dicom_dask.integrations.writers import options as write_options
from dicom_dask.integrations.writers.options import WriteOptions
from dicom_dask.testing import make_slide_dataset, series_positions, write_series

ROWS, COLS, TILE = 256, 384, 128


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-level native slide with a label image."""
    root = tmp_path_factory.mktemp("slide")
    rng = np.random.default_rng(3)
    picture = rng.integers(0, 255, (ROWS, COLS, 3), dtype=np.uint8)
    common: dict[str, Any] = {
        "transfer_syntax": uid.ExplicitVRLittleEndian,
        "frame_of_reference": "1.2.826.0.1.3680043.8.498.91",
        "study_uid": "1.2.826.0.1.3680043.8.498.92",
    }
    for name, matrix, kwargs in (
        ("l0", picture, {"tile": (TILE, TILE)}),
        ("label", np.full((60, 100, 3), 200, np.uint8), {"tile": (60, 100), "image_type": "LABEL"}),
    ):
        ds = make_slide_dataset(matrix, **kwargs, **common)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.93"
        ds.save_as(root / f"{name}.dcm", enforce_file_format=True)
    return root


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ct")
    volume = np.random.default_rng(4).integers(0, 2000, (4, 32, 24), dtype=np.uint16)
    write_series(root, volume, positions=series_positions(4, slice_spacing=2.0))
    return root


def _exploding(shape: tuple[int, ...], dtype: Any) -> da.Array:
    """A dask array that fails if any of its blocks is computed."""

    def boom(block: np.ndarray) -> np.ndarray:
        raise AssertionError("computed although the destination exists")

    return da.zeros(shape, dtype=dtype, chunks=TILE).map_blocks(boom, dtype=dtype)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _refused(excinfo: pytest.ExceptionInfo[DestinationExistsError], path: Path | str) -> None:
    text = str(excinfo.value)
    assert str(path) in text
    assert "overwrite=True" in text


def test_slide_refuses_an_existing_pyramid_and_replaces_it_with_overwrite(
    slide_dir: Path, tmp_path: Path
) -> None:
    slide = dicom_dask.open_slide(slide_dir)
    out = tmp_path / "pyramid"
    kwargs: dict[str, Any] = {"transfer_syntax": "explicit", "progress": False}
    first = dicom_dask.to_dicom_slide(slide, out, associated=True, levels=2, **kwargs)
    assert sorted(Path(f).name for f in first) == ["label.dcm", "level-0.dcm", "level-1.dcm"]
    before = _snapshot(out)
    with pytest.raises(DestinationExistsError) as excinfo:
        dicom_dask.to_dicom_slide(slide, out, associated=True, levels=2, **kwargs)
    _refused(excinfo, out / "level-0.dcm")
    with pytest.raises(DestinationExistsError):  # nothing computed: the check comes first
        dicom_dask.to_dicom_slide(_exploding((ROWS, COLS, 3), np.uint8), out, like=slide, **kwargs)
    assert _snapshot(out) == before
    again = dicom_dask.to_dicom_slide(
        slide, out, associated=True, levels=2, overwrite=True, **kwargs
    )
    assert again == first
    after = _snapshot(out)
    assert after.keys() == before.keys() and after != before  # new UIDs: rewritten
    reopened = dicom_dask.open_slide(out)
    np.testing.assert_array_equal(reopened.levels[0].compute(), slide.levels[0].compute())


def test_slide_overwrite_through_options_leaves_one_pyramid(
    slide_dir: Path, tmp_path: Path
) -> None:
    """A smaller pyramid over a larger one: the old deeper levels and label go."""
    slide = dicom_dask.open_slide(slide_dir)
    out = tmp_path / "pyramid"
    kwargs: dict[str, Any] = {"transfer_syntax": "explicit", "progress": False}
    dicom_dask.to_dicom_slide(slide, out, associated=True, levels=3, **kwargs)
    assert len(list(out.iterdir())) == 4
    with pytest.raises(DestinationExistsError):
        dicom_dask.to_dicom_slide(slide, out, levels=1, options=WriteOptions(), **kwargs)
    files = dicom_dask.to_dicom_slide(
        slide, out, levels=1, options=WriteOptions(overwrite=True), **kwargs
    )
    assert sorted(p.name for p in out.iterdir()) == ["level-0.dcm"] == [Path(f).name for f in files]
    assert len(dicom_dask.open_slide(out).levels) == 1


def test_slide_refuses_a_leftover_level_it_would_not_write(slide_dir: Path, tmp_path) -> None:
    slide = dicom_dask.open_slide(slide_dir)
    out = tmp_path / "pyramid"
    out.mkdir()
    (out / "level-5.dcm").write_bytes(b"old")
    with pytest.raises(DestinationExistsError) as excinfo:
        dicom_dask.to_dicom_slide(slide, out, transfer_syntax="explicit", progress=False)
    _refused(excinfo, out / "level-5.dcm")
    assert sorted(p.name for p in out.iterdir()) == ["level-5.dcm"]


def test_scratch_is_deprecated(slide_dir: Path, tmp_path: Path) -> None:
    slide = dicom_dask.open_slide(slide_dir)
    with pytest.warns(DeprecationWarning, match="scratch.*ignored"):
        files = dicom_dask.to_dicom_slide(
            slide, tmp_path / "a", transfer_syntax="explicit", scratch="/tmp", progress=False
        )
    assert Path(files[0]).exists()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*scratch", category=DeprecationWarning)
        dicom_dask.to_dicom_slide(slide, tmp_path / "b", transfer_syntax="explicit", progress=False)


def test_seg_refuses_an_existing_file(slide_dir: Path, tmp_path: Path) -> None:
    slide = dicom_dask.open_slide(slide_dir)
    labels = np.zeros((ROWS, COLS), np.uint8)
    labels[20:100, 30:200] = 1
    path = tmp_path / "seg.dcm"
    dicom_dask.to_dicom_seg(labels, path, like=slide, progress=False)
    before = path.read_bytes()
    with pytest.raises(DestinationExistsError) as excinfo:
        dicom_dask.to_dicom_seg(_exploding((ROWS, COLS), np.uint8), path, like=slide)
    _refused(excinfo, path)
    assert path.read_bytes() == before
    dicom_dask.to_dicom_seg(labels, path, like=slide, overwrite=True, progress=False)
    old = pydicom.dcmread(pydicom.filebase.DicomBytesIO(before))
    assert pydicom.dcmread(path).SOPInstanceUID != old.SOPInstanceUID


def test_pmap_refuses_an_existing_file_and_takes_options(slide_dir: Path, tmp_path) -> None:
    slide = dicom_dask.open_slide(slide_dir)
    values = np.linspace(0, 1, ROWS * COLS, dtype=np.float32).reshape(ROWS, COLS)
    path = tmp_path / "pm.dcm"
    dicom_dask.to_dicom_pmap(values, path, like=slide, progress=False)
    before = path.read_bytes()
    with pytest.raises(DestinationExistsError) as excinfo:
        dicom_dask.to_dicom_pmap(_exploding((ROWS, COLS), np.float32), path, like=slide)
    _refused(excinfo, path)
    assert path.read_bytes() == before
    dicom_dask.to_dicom_pmap(values, path, like=slide, overwrite=True, progress=False)
    assert path.read_bytes() != before
    third = path.read_bytes()
    opts = WriteOptions(overwrite=True, progress=False)
    dicom_dask.to_dicom_pmap(values, path, like=slide, options=opts)
    assert path.read_bytes() != third


def test_series_refuses_an_existing_series(ct_dir: Path, tmp_path: Path) -> None:
    vol = dicom_dask.open_volume(ct_dir)
    out = tmp_path / "series"
    files = dicom_dask.to_dicom_series(vol, out, progress=False)
    before = _snapshot(out)
    with pytest.raises(DestinationExistsError) as excinfo:
        dicom_dask.to_dicom_series(vol, out, progress=False)
    _refused(excinfo, files[0])
    assert _snapshot(out) == before
    (out / "slice-0009.dcm").write_bytes(b"a slice of an older, longer series")
    assert dicom_dask.to_dicom_series(vol, out, overwrite=True, progress=False) == files
    after = _snapshot(out)
    assert after.keys() == before.keys() and after != before  # the leftover slice is gone
    np.testing.assert_array_equal(dicom_dask.open_volume(out).array, vol.array.compute())


def test_fsspec_destinations_are_checked_too(slide_dir: Path, ct_dir: Path) -> None:
    slide = dicom_dask.open_slide(slide_dir)
    root = f"memory://overwrite-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        url = f"{root}/seg.dcm"
        labels = np.ones((ROWS, COLS), np.uint8)
        assert dicom_dask.to_dicom_seg(labels, url, like=slide, progress=False) == url
        before = fs.cat_file(url)
        with pytest.raises(DestinationExistsError, match="overwrite=True"):
            dicom_dask.to_dicom_seg(labels, url, like=slide, progress=False)
        assert fs.cat_file(url) == before
        dicom_dask.to_dicom_seg(labels, url, like=slide, overwrite=True, progress=False)
        assert fs.cat_file(url) != before
        kwargs: dict[str, Any] = {"transfer_syntax": "explicit", "progress": False}
        dicom_dask.to_dicom_slide(slide, f"{root}/pyr", levels=2, **kwargs)
        with pytest.raises(DestinationExistsError, match=r"level-0\.dcm"):
            dicom_dask.to_dicom_slide(slide, f"{root}/pyr", levels=1, **kwargs)
        dicom_dask.to_dicom_slide(slide, f"{root}/pyr", levels=1, overwrite=True, **kwargs)
        assert [p.rpartition("/")[2] for p in fs.ls(f"{root}/pyr", detail=False)] == ["level-0.dcm"]
        vol = dicom_dask.open_volume(ct_dir)
        dicom_dask.to_dicom_series(vol, f"{root}/ct", progress=False)
        with pytest.raises(DestinationExistsError, match=r"slice-0001\.dcm"):
            dicom_dask.to_dicom_series(vol, f"{root}/ct", progress=False)
    finally:
        fs.rm(root.removeprefix("memory://"), recursive=True)


def test_cli_convert_to_dicom_needs_overwrite(
    slide_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["convert", str(slide_dir), str(out), "--to", "dicom", "-q"]
    assert main([*argv, "--transfer-syntax", "explicit"]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    assert main([*argv, "--transfer-syntax", "rle"]) == 2
    err = capsys.readouterr().err
    assert str(out / "level-0.dcm") in err and "pass --overwrite" in err
    assert _snapshot(out) == before
    assert main([*argv, "--transfer-syntax", "rle", "--overwrite"]) == 0
    ds = pydicom.dcmread(out / "level-0.dcm", stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == uid.RLELossless


def test_check_destination_alone(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(b"x")
    paths = [str(tmp_path / "a.dcm"), str(tmp_path / "b.dcm")]
    with pytest.raises(DestinationExistsError, match=r"a\.dcm already exists; pass overwrite"):
        write_options.check_destination(paths)
    assert write_options.check_destination(paths, overwrite=True) == []
    assert write_options.check_destination([str(tmp_path / "new" / "c.dcm")]) == []
