"""Bad input raises dicom_dask errors naming the file, never garbage or a hang."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.errors import (
    CorruptFrameError,
    DicomDaskError,
    InvalidHeaderError,
    NoPixelDataError,
    NotDicomError,
    ReadError,
    TruncatedFileError,
)
from dicom_dask.testing import make_dataset, write_dicom
from tests.conftest import REAL, hang_guard

RNG = np.random.default_rng(3)
FRAMES = RNG.integers(0, 4000, (4, 16, 16), dtype=np.uint16)
SOURCES = {
    "native": {"transfer_syntax": uid.ExplicitVRLittleEndian},
    "rle-bot": {"transfer_syntax": uid.RLELossless, "offset_table": "bot"},
    "rle-eot": {"transfer_syntax": uid.RLELossless, "offset_table": "eot"},
    "jls-none": {"transfer_syntax": uid.JPEGLSLossless, "offset_table": "none"},
}
SLOWEST: list[float] = []


def _open_and_read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = dicom_dask.open_frames(path)
        return frames.array.compute(scheduler="sync")


def _only_our_errors(path: Path) -> np.ndarray | None:
    start = time.perf_counter()
    try:
        with hang_guard(10):
            return _open_and_read(path)
    except DicomDaskError as exc:
        assert str(path) in str(exc) or "frame" in str(exc), exc
        return None
    finally:
        SLOWEST.append(time.perf_counter() - start)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_truncations(tmp_path, name: str) -> None:
    good = Path(write_dicom(tmp_path / f"{name}.dcm", FRAMES, **SOURCES[name]))
    data = good.read_bytes()
    cuts = sorted(set(np.linspace(0, len(data) - 1, 60).astype(int).tolist()) | {0, 1, 128, 132})
    for cut in cuts:
        bad = tmp_path / f"cut-{cut}.dcm"
        bad.write_bytes(data[:cut])
        got = _only_our_errors(bad)
        if got is not None:  # only a cut after the last frame's bytes can still read
            np.testing.assert_array_equal(got, FRAMES)


def test_truncated_real_jpeg(real_dir, tmp_path) -> None:
    data = (REAL / "wsi/cmu1_napari/volume.dcm").read_bytes()
    for cut in np.linspace(100, len(data) - 1, 25).astype(int):
        bad = tmp_path / f"cut-{cut}.dcm"
        bad.write_bytes(data[:cut])
        _only_our_errors(bad)


@pytest.mark.parametrize("name", ["rle-bot", "rle-eot"])
def test_corrupt_offset_tables(tmp_path, name: str) -> None:
    ds = make_dataset(FRAMES, **SOURCES[name])
    for trial in range(20):
        bad_ds = make_dataset(FRAMES, **SOURCES[name])
        if name == "rle-bot":
            value = bytearray(ds.PixelData)
            value[8 : 8 + 16] = RNG.integers(0, 256, 16, dtype=np.uint8).tobytes()
            bad_ds.PixelData = bytes(value)
        else:
            table = bytearray(ds.ExtendedOffsetTable)
            table[8 * (trial % 4) : 8 * (trial % 4) + 8] = RNG.integers(
                0, 256, 8, dtype=np.uint8
            ).tobytes()
            bad_ds.ExtendedOffsetTable = bytes(table)
            bad_ds.PixelData = ds.PixelData
        path = tmp_path / f"bad-{trial}.dcm"
        bad_ds.save_as(path, enforce_file_format=True)
        got = _only_our_errors(path)
        if got is not None:  # the fragments were scanned instead: the result is right
            np.testing.assert_array_equal(got, FRAMES)


def test_random_bytes_in_frames(tmp_path) -> None:
    path = Path(write_dicom(tmp_path / "jls.dcm", FRAMES, **SOURCES["jls-none"]))
    frames = dicom_dask.open_frames(path)
    data = bytearray(path.read_bytes())
    for trial in range(20):
        corrupt = bytearray(data)
        i = trial % len(frames.manifest.offsets)
        start = int(frames.manifest.offsets[i, 0, 0])
        length = int(frames.manifest.lengths[i, 0, 0])
        pos = start + int(RNG.integers(0, length - 8))
        corrupt[pos : pos + 8] = RNG.integers(0, 256, 8, dtype=np.uint8).tobytes()
        bad = tmp_path / f"corrupt-{trial}.dcm"
        bad.write_bytes(bytes(corrupt))
        got = _only_our_errors(bad)
        if got is not None:
            assert got.shape == FRAMES.shape and got.dtype == FRAMES.dtype


def test_corrupt_frame_names_url_frame_and_offset(tmp_path) -> None:
    path = Path(write_dicom(tmp_path / "jls.dcm", FRAMES, **SOURCES["jls-none"]))
    frames = dicom_dask.open_frames(path)
    data = bytearray(path.read_bytes())
    start = int(frames.manifest.offsets[2, 0, 0])
    length = int(frames.manifest.lengths[2, 0, 0])
    data[start : start + length] = b"\xff\xd8" + b"\x00" * (length - 2)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFrameError) as info:
        dicom_dask.open_frames(path).array[2].compute()
    message = str(info.value)
    assert str(path) in message and "frame 2" in message and str(start) in message


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", NotDicomError),
        (b"hello, this is not DICOM\n" * 40, NotDicomError),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, NotDicomError),
        (bytes(RNG.integers(0, 256, 4096, dtype=np.uint8)), DicomDaskError),
    ],
)
def test_not_dicom(tmp_path, content: bytes, error: type) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(content)
    with hang_guard(10), pytest.raises(error) as info:
        dicom_dask.open_frames(path)
    assert str(path) in str(info.value)


def test_no_pixel_data(tmp_path) -> None:
    ds = make_dataset(FRAMES)
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(NoPixelDataError, match="no pixel data"):
        dicom_dask.open_frames(path)


def test_missing_file() -> None:
    with pytest.raises(ReadError, match="no such file") as info:
        dicom_dask.open_frames("/nonexistent/x.dcm")
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize(
    ("changes", "error", "text"),
    [
        ({"NumberOfFrames": 10**9}, TruncatedFileError, "need"),
        ({"Rows": 30000, "Columns": 30000, "NumberOfFrames": 1000}, TruncatedFileError, "need"),
        ({"Rows": 65535, "Columns": 65535, "NumberOfFrames": 233}, InvalidHeaderError, "limit"),
        ({"Rows": 0}, InvalidHeaderError, "Rows"),
        ({"BitsAllocated": 12}, InvalidHeaderError, "Bits Allocated"),
        ({"SamplesPerPixel": 4}, InvalidHeaderError, "Samples per Pixel"),
    ],
)
def test_huge_or_invalid_claims_native(tmp_path, changes, error, text) -> None:
    ds = make_dataset(FRAMES, extra=changes)
    path = tmp_path / "claims.dcm"
    ds.save_as(path, enforce_file_format=True)
    with hang_guard(10), pytest.raises(error, match=text) as info:
        dicom_dask.open_frames(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("offset_table", ["bot", "none", "eot"])
def test_huge_claims_encapsulated(tmp_path, offset_table) -> None:
    ds = make_dataset(
        FRAMES,
        transfer_syntax=uid.RLELossless,
        offset_table=offset_table,
        extra={"NumberOfFrames": 10**9},
    )
    path = tmp_path / "claims.dcm"
    ds.save_as(path, enforce_file_format=True)
    with hang_guard(10), warnings.catch_warnings(), pytest.raises(DicomDaskError) as info:
        warnings.simplefilter("ignore")
        dicom_dask.open_frames(path)
    assert str(path) in str(info.value)


def test_huge_frame_is_refused(tmp_path) -> None:
    rgb = RNG.integers(0, 255, (1, 8, 8, 3), dtype=np.uint8)
    ds = make_dataset(
        rgb,
        transfer_syntax=uid.RLELossless,
        extra={"Rows": 65535, "Columns": 65535, "BitsAllocated": 32, "BitsStored": 32},
    )
    path = tmp_path / "huge.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InvalidHeaderError, match="limit"):
        dicom_dask.open_frames(path)


def test_no_case_was_slow() -> None:
    # Not a performance assertion: a guard that nothing above waited on a hang.
    assert not SLOWEST or max(SLOWEST) < 10
