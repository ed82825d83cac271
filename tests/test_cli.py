"""The dicom-dask command: info, index, refs, convert; exit codes."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
import zarr

import dicom_dask
from dicom_dask.integrations.cli import main

from .conftest import REAL


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_on_folder_slide_and_volume(real_dir, capsys) -> None:
    code, out, _ = _run(capsys, "info", str(REAL / "wsi" / "cmu1_napari"))
    assert code == 0
    info = json.loads(out)
    assert info["kind"] == "folder"
    assert len(info["slides"]) == 1 and len(info["slides"][0]["instances"]) == 4
    code, out, _ = _run(capsys, "info", str(REAL / "wsi" / "cmu1_napari" / "volume.dcm"))
    info = json.loads(out)
    assert info["kind"] == "slide"
    assert info["slide"]["levels"][0]["shape"] == [2967, 2220, 3]
    code, out, _ = _run(capsys, "info", str(REAL / "enhanced" / "siemens_xa10_enhanced_mr.dcm"))
    info = json.loads(out)
    assert info["kind"] == "volume"
    assert info["volume"]["shape"] == [6, 64, 64]
    assert len(info["volume"]["affine"]) == 4


def test_refs_of_a_slide_open_in_plain_zarr(real_dir, capsys, tmp_path) -> None:
    path = REAL / "wsi" / "cmu1_napari" / "volume.dcm"
    out_file = tmp_path / "refs.json"
    code, out, _ = _run(capsys, "refs", str(path), "-o", str(out_file), "--kind", "slide")
    assert code == 0 and "references" in out
    refs = json.loads(out_file.read_text())
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    group = zarr.open_group(store, mode="r")
    assert group.attrs["ome"]["version"] == "0.5"
    expected = dicom_dask.open_slide(path).zarr["0"][:, :300, :200]
    np.testing.assert_array_equal(group["0"][:, :300, :200], expected)


def test_convert_slide_and_volume(real_dir, capsys, tmp_path) -> None:
    slide = REAL / "wsi" / "highdicom_sm_image.dcm"
    code, out, _ = _run(capsys, "convert", str(slide), str(tmp_path / "s.zarr"), "-q")
    assert code == 0
    written = zarr.open_group(tmp_path / "s.zarr", mode="r")
    np.testing.assert_array_equal(written["0"][...], dicom_dask.open_slide(slide).zarr["0"][...])
    folder = REAL / "volume_series" / "ct_3slice"
    code, out, _ = _run(capsys, "convert", str(folder), str(tmp_path / "v.zarr"), "-q")
    assert "zarr array" in out
    assert code == 0
    array = zarr.open_array(tmp_path / "v.zarr", mode="r")
    np.testing.assert_array_equal(array[...], dicom_dask.open_volume(folder).array.compute())
    assert len(array.attrs["affine"]) == 4


def test_index_then_open_from_it(real_dir, capsys, tmp_path) -> None:
    path = REAL / "wsi" / "highdicom_seg_sm_labelmap_palette.dcm"
    code, out, _ = _run(capsys, "index", str(path), str(tmp_path / "i.json"))
    assert code == 0 and "slide index" in out
    again = dicom_dask.open_slide(index=tmp_path / "i.json")
    np.testing.assert_array_equal(
        again.levels[0].compute(), dicom_dask.open_tiled(path).array.compute()
    )


def test_errors_exit_2_with_the_file_named(tmp_path, capsys) -> None:
    bad = tmp_path / "not-dicom.dcm"
    bad.write_bytes(b"hello" * 100)
    code, _, err = _run(capsys, "info", str(bad))
    assert code == 2
    assert str(bad) in err and "error" in err
    with pytest.raises(SystemExit):
        main(["info", str(bad), "--storage-option", "novalue"])


def _subprocess(*argv: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "dicom_dask.integrations.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_end_to_end_in_a_subprocess(real_dir, tmp_path) -> None:
    path = REAL / "wsi" / "highdicom_sm_image.dcm"
    done = _subprocess("info", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "slide"
    done = _subprocess("refs", str(path), "-o", str(tmp_path / "r.json"))
    assert done.returncode == 0 and (tmp_path / "r.json").exists()
    done = _subprocess("convert", str(path), str(tmp_path / "o.zarr"), "-q")
    assert done.returncode == 0, done.stderr
    done = _subprocess("index", str(path), str(tmp_path / "i.json"))
    assert done.returncode == 0, done.stderr


def test_bad_urls_and_options_in_a_subprocess(tmp_path) -> None:
    missing = tmp_path / "missing.dcm"
    done = _subprocess("info", str(missing))
    assert done.returncode == 2
    assert str(missing) in done.stderr and "no such file" in done.stderr
    assert "Traceback" not in done.stderr
    done = _subprocess("info", "nosuchprotocol://bucket/x.dcm")
    assert done.returncode == 2 and "nosuchprotocol://bucket/x.dcm" in done.stderr
    done = _subprocess("info", str(missing), "--storage-option", "novalue")
    assert done.returncode != 0 and "key=value" in done.stderr
    done = _subprocess("frobnicate")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    done = _subprocess("convert", str(missing))
    assert done.returncode == 2 and "dest" in done.stderr
