"""Reference sets from to_kerchunk reopen in plain zarr and equal our arrays."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import zarr

import dicom_dask

from .conftest import REAL


def _open(refs: dict) -> zarr.Array:
    json.dumps(refs)
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    return zarr.open_array(store, mode="r")


def test_tiled_and_native_files(real_dir) -> None:
    for path in (
        REAL / "wsi" / "cmu1_napari" / "volume.dcm",  # tiled JPEG with BOT
        REAL / "wsi" / "highdicom_sm_image_jpegls_nobot.dcm",  # tiled, scanned fragments
        REAL / "volume_series" / "ct_3slice" / "01.dcm",  # native
    ):
        array = _open(dicom_dask.to_kerchunk(path))
        expected = dicom_dask.open_frames(path).array.compute()
        np.testing.assert_array_equal(array[...], expected)


def test_series(real_dir) -> None:
    folder = REAL / "volume_series" / "ct_24x38x3"
    refs = dicom_dask.to_kerchunk(folder)
    array = _open(refs)
    np.testing.assert_array_equal(array[...], dicom_dask.open_volume(folder).array.compute())
    assert len({v[0] for k, v in refs["refs"].items() if k.startswith("c/")}) == 3  # 3 files
