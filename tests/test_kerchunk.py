"""Reference sets from to_kerchunk reopen in plain zarr and equal our arrays."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
import zarr

import dicom_dask

from .conftest import REAL


def _root(refs: dict) -> zarr.Group:
    json.dumps(refs)
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    return zarr.open_group(store, mode="r")


def _open_v3(refs: dict) -> zarr.Array:
    json.dumps(refs)
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    return zarr.open_array(store, mode="r")


TILED_AND_NATIVE = (
    REAL / "wsi" / "cmu1_napari" / "volume.dcm",  # tiled JPEG with BOT
    REAL / "wsi" / "highdicom_sm_image_jpegls_nobot.dcm",  # tiled, scanned fragments
    REAL / "volume_series" / "ct_3slice" / "01.dcm",  # native
)


@pytest.mark.parametrize("path", TILED_AND_NATIVE, ids=lambda p: p.name)
def test_tiled_and_native_files(real_dir, path) -> None:
    expected = dicom_dask.open_frames(path).array.compute()
    refs = dicom_dask.to_kerchunk(path)  # zarr v2, a named variable
    assert "frames/.zarray" in refs["refs"] and "zarr.json" not in refs["refs"]
    group = _root(refs)
    assert group.metadata.zarr_format == 2
    np.testing.assert_array_equal(group["frames"][...], expected)
    v3 = _open_v3(dicom_dask.to_kerchunk(path, zarr_format=3))  # one v3 array at the root
    np.testing.assert_array_equal(v3[...], expected)


def test_series(real_dir) -> None:
    folder = REAL / "volume_series" / "ct_24x38x3"
    refs = dicom_dask.to_kerchunk(folder)
    expected = dicom_dask.open_volume(folder).array.compute()
    np.testing.assert_array_equal(_root(refs)["volume"][...], expected)
    chunks = [v for k, v in refs["refs"].items() if k.startswith("volume/") and "/." not in k]
    assert len({url for url, _, _ in chunks}) == 3  # 3 files
    v3 = dicom_dask.to_kerchunk(folder, zarr_format=3)
    np.testing.assert_array_equal(_open_v3(v3)[...], expected)


def test_slide_levels_as_groups(real_dir) -> None:
    path = REAL / "wsi" / "highdicom_sm_image.dcm"
    slide = dicom_dask.open_slide(path)
    group = _root(dicom_dask.to_kerchunk(path, kind="slide", zarr_format=2))
    for i in range(len(slide.pyramid)):
        np.testing.assert_array_equal(group[f"{i}/image"][...], slide.zarr[str(i)][...])
    ome = _root(dicom_dask.to_kerchunk(path, kind="slide"))  # OME-Zarr 0.5 (v3) by default
    assert ome.attrs["ome"]["version"] == "0.5"
