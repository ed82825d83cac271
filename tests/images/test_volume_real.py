"""Real series and enhanced files: arrays and affines against highdicom and REFERENCE.json."""

from __future__ import annotations

import glob
import hashlib
import warnings

import numpy as np
import pydicom
import pytest

import dicom_dask
from dicom_dask.errors import LayoutError
from tests.conftest import REAL, REFERENCE

SERIES = {s["folder"]: s for s in REFERENCE["series"]}
ENHANCED = sorted(p.relative_to(REAL).as_posix() for p in (REAL / "enhanced").glob("*.dcm"))
STORED = {
    "apply_modality_transform": False,
    "apply_voi_transform": False,
    "apply_presentation_lut": False,
    "apply_palette_color_lut": False,
    "apply_icc_profile": False,
}
# highdicom cannot build these volumes (orientations differ in the 6th decimal; no Frame of
# Reference; RT Dose grid offsets; enhanced MR without functional groups): checked otherwise
HIGHDICOM_FAILS = {
    "volume_series/mr_adc_20slice",
    "volume_series/mr_siemens_4slice",
    "enhanced/philips_enhanced_fmri.dcm",
    "enhanced/rtdose.dcm",
}
NO_GEOMETRY = {  # pydicom's emri_small files carry no functional groups at all
    f"enhanced/emri_small{s}.dcm"
    for s in ("", "_RLE", "_big_endian", "_jpeg_2k_lossless", "_jpeg_ls_lossless")
}


def _highdicom(path: str, dtype: np.dtype):
    hd = pytest.importorskip("highdicom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.startswith("volume_series"):
            datasets = [pydicom.dcmread(f) for f in sorted(glob.glob(str(REAL / path / "*")))]
            return hd.get_volume_from_series(datasets, dtype=dtype, **STORED)
        return hd.imread(REAL / path).get_volume(
            dtype=dtype, apply_real_world_transform=False, **STORED
        )


@pytest.mark.parametrize("path", sorted(SERIES) + ENHANCED)
def test_volume_equals_highdicom(real_dir, path: str) -> None:
    if path in NO_GEOMETRY:
        with pytest.raises(LayoutError, match=r"\(0020,0032\) Image Position"):
            dicom_dask.open_volume(REAL / path)
        return
    volume = dicom_dask.open_volume(REAL / path, backend="pydicom")
    got = volume.array.compute()
    if path in HIGHDICOM_FAILS:
        pytest.skip("highdicom cannot build this volume; see test_volume_equals_reference")
    expected = _highdicom(path, got.dtype)
    assert got.shape == expected.array.shape
    np.testing.assert_array_equal(got, expected.array)
    np.testing.assert_allclose(volume.affine, expected.affine, atol=1e-6)
    assert volume.frame_of_reference_uid == expected.frame_of_reference_uid


@pytest.mark.parametrize("folder", sorted(SERIES))
def test_volume_equals_reference(real_dir, folder: str) -> None:
    """REFERENCE.json stacks slices ascending along the normal; affine (column, row, slice)."""
    ref = SERIES[folder]
    volume = dicom_dask.open_volume(REAL / folder, backend="pydicom")
    ascending = volume.flip(0)
    data = np.ascontiguousarray(ascending.array.compute())
    assert list(data.shape) == ref["stacked_shape"]
    digest = hashlib.sha256(data.astype(data.dtype.newbyteorder("<")).tobytes()).hexdigest()
    assert digest == ref["stacked_sha256"]
    affine = ascending.permute_spatial_axes((2, 1, 0)).affine
    # REFERENCE's slice axis is the mean step between real positions from the first
    # slice; ours (highdicom's) is the mean spacing along the normal: they differ by
    # the positions' jitter (1e-3 mm on mr_adc_20slice)
    np.testing.assert_allclose(affine, np.array(ref["affine_lps"]), atol=2e-3)
    files = [str(REAL / f) for f in ref["sorted_files"]]
    assert [f for f, _ in ascending.metadata["slice_files"]] == files


def test_rtdose_grid_offsets_and_fmri_time(real_dir) -> None:
    dose = dicom_dask.open_volume(REAL / "enhanced/rtdose.dcm", backend="pydicom")
    ds = pydicom.dcmread(REAL / "enhanced/rtdose.dcm")
    offsets = np.asarray(ds.GridFrameOffsetVector, dtype=float)
    # slices run against the normal: the last grid offset comes first
    assert dose.spatial_shape[0] == len(offsets)
    np.testing.assert_array_equal(dose.array.compute(), ds.pixel_array[np.argsort(-offsets)])
    fmri = dicom_dask.open_volume(REAL / "enhanced/philips_enhanced_fmri.dcm", backend="pydicom")
    assert fmri.shape == (8, 64, 64, 4)
    assert fmri.channels == {"TemporalPositionIndex": (1, 2, 3, 4)}
    raw = pydicom.dcmread(REAL / "enhanced/philips_enhanced_fmri.dcm")
    frames = raw.pixel_array
    got = fmri.array.compute()
    for k, item in enumerate(raw.PerFrameFunctionalGroupsSequence):
        t = int(item.FrameContentSequence[0].TemporalPositionIndex) - 1
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        s = int(np.round(fmri.map_reference_to_indices(position[None])[0, 0]))
        np.testing.assert_array_equal(got[s, :, :, t], frames[k])
