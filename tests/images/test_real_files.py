"""Every real file pydicom decodes gives the same array through dicom_dask."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from dask.array.utils import assert_eq

import dicom_dask
from dicom_dask.errors import DicomDaskError
from tests.conftest import REAL, REFERENCE, read_reference_array

LOSSY = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.203",
}
ENTRIES = {e["path"]: e for e in REFERENCE["files"]}


def _expected(entry: dict) -> np.ndarray:
    """pydicom's array (native byte order, with a frame axis); skip when it cannot decode."""
    arr = read_reference_array(entry)
    if arr is None:
        pytest.skip("pydicom cannot decode this file (see test_files_pydicom_cannot_decode)")
    arr = arr.astype(arr.dtype.newbyteorder("="))
    if entry["number_of_frames"] == 1:
        arr = arr[None]
    return arr


@pytest.mark.parametrize("path", sorted(ENTRIES))
def test_same_decoder_is_bit_exact(real_dir, path: str) -> None:
    entry = ENTRIES[path]
    expected = _expected(entry)
    frames = dicom_dask.open_frames(REAL / path, backend="pydicom")
    assert frames.array.shape == expected.shape
    assert frames.array.dtype == expected.dtype
    got = frames.array.compute()
    np.testing.assert_array_equal(got, expected)
    # the zarr path (store + registered codec) gives the same pixels as the dask path
    np.testing.assert_array_equal(frames.zarr[...], got)
    # and pydicom's reference hash in REFERENCE.json (single frames are hashed 2-D)
    ref = got[0] if entry["number_of_frames"] == 1 else got
    digest = hashlib.sha256(np.ascontiguousarray(ref.astype(ref.dtype.newbyteorder("<"))).tobytes())
    assert digest.hexdigest() == entry["sha256"]


@pytest.mark.parametrize("path", sorted(ENTRIES))
def test_default_backend(real_dir, path: str) -> None:
    """The fastest backend: lossless bit-exact; lossy JPEG within libjpeg rounding."""
    entry = ENTRIES[path]
    expected = _expected(entry)
    frames = dicom_dask.open_frames(REAL / path)
    got = frames.array.compute()
    backend = frames.codecs[-1].get("configuration", {}).get("backend", "bytes")
    if (
        backend.startswith("pydicom")
        or backend == "bytes"
        or entry["transfer_syntax_uid"] not in LOSSY
    ):
        np.testing.assert_array_equal(got, expected)
    else:
        # libjpeg-turbo vs libjpeg: different IDCT/upsampling rounding, never more
        diff = np.abs(got.astype(np.int32) - expected.astype(np.int32))
        assert diff.max() <= 16 and diff.mean() < 1.5, (diff.max(), diff.mean())
    assert_eq(frames.array, got)


def test_files_pydicom_cannot_decode(real_dir) -> None:
    """RLE with BitsAllocated 1 and Deflated Image Frame Compression decode like liver_seg."""
    expected = dicom_dask.open_frames(REAL / "enhanced/liver_seg.dcm").array.compute()
    assert expected.sum() > 0
    for path in ("misc/liver_rle_pydicom_fails.dcm", "misc/liver_deflate_pydicom_fails.dcm"):
        frames = dicom_dask.open_frames(REAL / path)
        got = frames.array.compute()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(frames.zarr[...], expected)


def test_every_real_file_opens_or_raises_our_error(real_dir) -> None:
    for path in ENTRIES:
        try:
            dicom_dask.open_frames(REAL / path)
        except DicomDaskError:  # pragma: no cover - none expected in the set
            pytest.fail(f"{path} failed to open")


def test_raw_keeps_ybr(real_dir) -> None:
    import pydicom
    from pydicom.pixels import pixel_array

    path = REAL / "misc/SC_ybr_full_uncompressed.dcm"
    expected = pixel_array(pydicom.dcmread(path), as_rgb=False)
    frames = dicom_dask.open_frames(path, raw=True)
    np.testing.assert_array_equal(frames.array.compute()[0], expected)
    assert frames.metadata["attributes"]["dicom_dask"]["photometric_interpretation"] == "YBR_FULL"
    path = REAL / "codecs/jpeg_baseline/SC_rgb_dcmtk_+eb+cy+s2.dcm"
    expected = pixel_array(pydicom.dcmread(path), as_rgb=False)
    got = dicom_dask.open_frames(path, raw=True, backend="pydicom").array.compute()[0]
    np.testing.assert_array_equal(got, expected)


def test_quick_header_parse_equals_dcmread(real_dir) -> None:
    """The header read (pydicom's read_dataset) gives dcmread's dataset, as DICOM JSON."""
    import json
    import warnings

    import pydicom

    from dicom_dask.frames import index_frames

    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in REFERENCE["files"]:
            path = REAL / entry["path"]
            try:
                ref = pydicom.dcmread(path, stop_before_pixels=True)
                ours = index_frames(path).header.dataset
            except Exception:  # a file dcmread or dicom_dask refuses
                continue
            assert json.dumps(ours.to_json_dict(bulk_data_threshold=2**62)) == json.dumps(
                ref.to_json_dict(bulk_data_threshold=2**62)
            ), entry["path"]
            assert ours.original_character_set == ref.original_character_set
            checked += 1
    assert checked >= 100
