"""Real-world layouts (issue 16), written the way real writers write them.

Each test builds files with the structure of a public real file that dicom_dask
once refused (see ``dicom_dask.testing.realworld``) and checks the result against
pydicom, file by file.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.testing import write_dicom
from dicom_dask.testing.realworld import write_dose

RNG = np.random.default_rng(16)


# -- 8-bit data as OW in Explicit VR Big Endian -------------------------------------------
@pytest.mark.parametrize("frames", [1, 2, 3])
@pytest.mark.parametrize("samples", [1, 3])
def test_big_endian_ow_odd_frames(tmp_path, frames: int, samples: int) -> None:
    """A 3x3 frame of 8-bit samples (9 or 27 bytes) in word-swapped OW equals pydicom."""
    shape = (frames, 3, 3, samples) if samples > 1 else (frames, 3, 3)
    data = RNG.integers(0, 256, shape, dtype=np.uint8)
    path = write_dicom(
        tmp_path / "be.dcm", data, transfer_syntax=uid.ExplicitVRBigEndian, pixel_vr="OW"
    )
    ds = pydicom.dcmread(path)
    assert ds["PixelData"].VR == "OW"
    expected = ds.pixel_array.reshape(shape)
    np.testing.assert_array_equal(expected, data)  # the writer wrote what pydicom reads
    got = np.asarray(dicom_dask.open_frames(path).array)
    np.testing.assert_array_equal(got.reshape(shape), expected)


# -- RT Dose -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_rt_dose_in_gray(tmp_path, dtype) -> None:
    grid = RNG.integers(0, 60000, (4, 6, 5)).astype(dtype)
    path = write_dose(tmp_path / "dose.dcm", grid, scaling=3.1e-5)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.DoseGridScaling)
    frames = dicom_dask.open_frames(path).transformed(dtype=np.float64)
    np.testing.assert_array_equal(np.asarray(frames.array), expected)
    volume = dicom_dask.open_volume(path)
    dosed = volume.transformed(dtype=np.float64)
    order = [frame for _, frame in volume.metadata["slice_files"]]
    np.testing.assert_array_equal(np.asarray(dosed.array), expected[order])
    assert dosed.metadata["transform"]["applied"][0]["slope_intercept"] == [3.1e-5, 0.0]
    # stored values when the modality transform is off
    stored = volume.transformed(apply_modality_transform=False, dtype=np.float64)
    np.testing.assert_array_equal(np.asarray(stored.array), ds.pixel_array[order])
