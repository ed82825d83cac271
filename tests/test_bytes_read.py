"""Reading one frame of a 4,096-frame file reads the header plus O(1) frames."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.testing import write_dicom

from .conftest import CountingFileSystem

NFRAMES = 4096


@pytest.fixture(scope="module")
def big_files(tmp_path_factory) -> dict[str, tuple[str, np.ndarray]]:
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 255, (NFRAMES, 16, 16), dtype=np.uint8)
    out = {}
    for table in ("bot", "none"):
        path = write_dicom(
            d / f"rle-{table}.dcm", frames, transfer_syntax=uid.RLELossless, offset_table=table
        )
        out[table] = (path, frames)
    return out


def _header_bytes(path: str) -> int:
    import pydicom

    with open(path, "rb") as f:
        pydicom.dcmread(f, stop_before_pixels=True)
        return f.tell()


@pytest.mark.parametrize("table", ["bot", "none"])
def test_one_frame_reads_header_plus_o1_frames(big_files, table: str, tmp_path) -> None:
    path, frames = big_files[table]
    size = os.path.getsize(path)
    fs = CountingFileSystem()
    if table == "none":
        # Without an offset table the first open scans the items once; save the index.
        dicom_dask.open_frames(path, filesystem=fs).save_index(tmp_path / "index.json")
        assert fs.bytes_read >= 0.9 * size  # the scan did read the item headers' blocks
        fs.reset()
        opened = dicom_dask.open_frames(path, index=tmp_path / "index.json")
        assert opened.index.requests == 0
    else:
        opened = dicom_dask.open_frames(path, filesystem=fs)
        header = _header_bytes(path)
        bot = 8 + 4 * NFRAMES
        # header + BOT + a few 8-byte checks; the first block reads ahead 64 KiB at most
        assert fs.bytes_read <= header + bot + 65536 + 64 * 8 + 16
        assert fs.requests <= 6
    # Count the bytes of reading one frame through the dask array.
    counting = CountingFileSystem()
    opened.store._filesystems["file"] = counting
    frame = opened.array[1234].compute()
    np.testing.assert_array_equal(frame, frames[1234])
    per_frame = int(opened.manifest.lengths.max())
    assert counting.requests == 1
    assert counting.bytes_read <= 2 * per_frame
    # and through zarr
    counting.reset()
    np.testing.assert_array_equal(opened.zarr[2345], frames[2345])
    assert counting.requests == 1
    assert counting.bytes_read <= 2 * per_frame
