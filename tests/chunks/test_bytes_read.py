"""Reading one frame of a 4,096-frame file reads the header plus O(1) frames."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.testing import write_dicom
from tests.conftest import CountingFileSystem

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
    # Count the bytes of reading one frame through the dask array (the same file, read
    # through a counting filesystem that is not the local disk's).
    counting = CountingFileSystem()
    opened = dicom_dask.open_frames(
        f"counting://{path}",
        storage_options=lambda: counting,
        index=opened.index,
        relocate=True,
    )
    counting.reset()
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


def test_region_reads_merge_tile_rows(tmp_path) -> None:
    """A 2048 x 2048 region of a 4096-tile slide: one request per tile row touched."""
    from dicom_dask.testing import write_slide

    tiles = np.random.default_rng(3).integers(0, 255, (64 * 64, 32, 32), dtype=np.uint8)
    matrix = tiles.reshape(64, 64, 32, 32).transpose(0, 2, 1, 3).reshape(2048, 2048)
    path = write_slide(tmp_path / "s.dcm", matrix, tile=(32, 32), transfer_syntax=uid.RLELossless)
    counting = CountingFileSystem()
    slide = dicom_dask.open_slide(f"counting://{path}", storage_options=lambda: counting)
    level = slide.pyramid[0]
    reader = level.reader(squeeze=False)
    counting.reset()
    y, x, h, w = 100, 250, 1024, 1024  # unaligned: 33 x 33 tiles touched
    region = reader[0, 0, y : y + h, x : x + w]  # integers drop their axes
    np.testing.assert_array_equal(region, matrix[y : y + h, x : x + w])
    rows = (y + h - 1) // 32 - y // 32 + 1
    cols = (x + w - 1) // 32 - x // 32 + 1
    touched = level.manifest.lengths[0, 0, y // 32 : y // 32 + rows, x // 32 : x // 32 + cols]
    assert counting.requests <= rows
    assert counting.bytes_read < 1.2 * int(touched.sum())


def test_merge_ranges_rules() -> None:
    from dicom_dask.frames.fetch import MERGE, MergePolicy, merge_ranges

    # neighbours merge; a large gap splits; results map back to the inputs
    spans = merge_ranges([(100, 200), (0, 100), (200, 250), (10_000_000, 10_000_010)])
    assert spans == [(0, 250, [1, 0, 2]), (10_000_000, 10_000_010, [3])]
    # a merge that would be mostly unrequested bytes is not made ...
    assert len(merge_ranges([(0, 100), (50_000, 50_100)])) == 2
    # ... unless the policy allows any waste (zarr's get_ranges: gap and size only)
    zarrs = MergePolicy(gap=1 << 20, limit=16 << 20, waste=1.0)
    assert merge_ranges([(0, 100), (50_000, 50_100)], policy=zarrs) == [(0, 50_100, [0, 1])]
    # the gap and size limits hold
    assert len(merge_ranges([(0, 10), (10, 30)], policy=MergePolicy(limit=20))) == 2
    assert len(merge_ranges([(0, 10), (MERGE.gap + 11, MERGE.gap + 12)], policy=zarrs)) == 1
    assert len(merge_ranges([(0, 10), (20, 30)], policy=MergePolicy(gap=9, waste=1.0))) == 2
    # duplicates share one request
    assert merge_ranges([(5, 9), (5, 9)]) == [(5, 9, [0, 1])]
