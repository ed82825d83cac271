"""The xarray backend (engine="dicom"): lazy arrays, values and coordinates."""

from __future__ import annotations

import numpy as np
import pytest

import dicom_dask

from .conftest import REAL

xr = pytest.importorskip("xarray")


def test_entry_point_is_registered() -> None:
    assert "dicom" in xr.backends.list_engines()


def test_series_as_dataset(real_dir) -> None:
    folder = REAL / "volume_series" / "ct_3slice"
    ds = xr.open_dataset(folder, engine="dicom", chunks={})
    image = ds["image"]
    assert image.dims == ("slice", "row", "column")
    assert image.chunks is not None  # dask-backed, in the volume's own chunks
    volume = dicom_dask.open_volume(folder)
    np.testing.assert_array_equal(image.values, volume.array.compute())
    np.testing.assert_allclose(np.diff(image["column"].values), volume.spacing[2])
    np.testing.assert_allclose(np.diff(image["slice"].values), volume.spacing[0])
    np.testing.assert_allclose(np.array(image.attrs["affine"]), volume.affine)
    assert image.attrs["frame_of_reference_uid"] == volume.frame_of_reference_uid
    assert "00280010" in image.attrs["dicom_json"]  # Rows, as DICOM JSON


def test_slide_as_dataset_and_datatree(real_dir) -> None:
    path = REAL / "wsi" / "cmu1_napari" / "volume.dcm"
    ds = xr.open_dataset(path, engine="dicom")
    image = ds["image"]
    assert image.dims == ("y", "x", "sample")
    level = dicom_dask.open_tiled(path)
    np.testing.assert_array_equal(image[100:200, 50:80].values, level.array[100:200, 50:80])
    np.testing.assert_allclose(np.diff(image["x"].values), level.pixel_spacing[1])
    # the coordinates follow the level's affine: pixel (0, 0) sits at the matrix origin
    first = level.affine[:3, 3]
    direction = level.affine[:3, 1] / np.linalg.norm(level.affine[:3, 1])
    np.testing.assert_allclose(image["x"].values[0], first @ direction)
    assert "00480006" in image.attrs["dicom_json"]  # Total Pixel Matrix Columns
    tree = xr.open_datatree(REAL / "wsi" / "cmu1_napari", engine="dicom")
    assert sorted(tree.children) == ["label", "level0", "overview", "thumbnail"]
    assert tree["level0"]["image"].shape == (2967, 2220, 3)
    assert tree["label"]["image"].shape == (463, 387, 3)


def test_frames_of_a_plain_image(real_dir) -> None:
    path = REAL / "codecs" / "jpeg_baseline" / "JPEGBaseline_1s_1f_u_08_08.dcm"
    ds = xr.open_dataset(path, engine="dicom", kind="frames")
    assert ds["image"].dims == ("frame", "row", "column")
    np.testing.assert_array_equal(ds["image"].values, dicom_dask.open_frames(path).array.compute())
