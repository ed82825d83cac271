"""The local fragment scan (one pread per item head, no object per item) finds the
same items, ranges and errors as the generic block walk used for remote files."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pytest
from pydicom import uid

from dicom_dask.errors import DicomDaskError
from dicom_dask.frames import index_frames
from dicom_dask.frames.encapsulated import scan_fragments
from dicom_dask.frames.source import BlockReader, open_file
from dicom_dask.testing import write_dicom

RNG = np.random.default_rng(3)
U16 = RNG.integers(0, 4000, (6, 16, 24), dtype=np.uint16)


@pytest.mark.parametrize(
    ("syntax", "fragments"),
    [(uid.RLELossless, 1), (uid.JPEGLSLossless, 2), (uid.JPEGLSLossless, 3)],
)
def test_local_scan_equals_block_walk(tmp_path, syntax, fragments) -> None:
    path = write_dicom(
        tmp_path / "nobot.dcm",
        U16,
        transfer_syntax=syntax,
        offset_table="none",
        fragments_per_frame=fragments,
    )
    data = Path(path).read_bytes()
    memory = fsspec.filesystem("memory")
    memory.pipe("/nobot.dcm", data)
    local = index_frames(path)
    remote = index_frames("memory://nobot.dcm")
    assert local.ranges.method == remote.ranges.method == "scan"
    for name in ("offsets", "lengths", "encoding", "fragments"):
        np.testing.assert_array_equal(getattr(local.ranges, name), getattr(remote.ranges, name))
    start = local.header.element.value_offset + 8  # empty BOT item
    a = scan_fragments(BlockReader(open_file(path)), start)
    b = scan_fragments(BlockReader(open_file("memory://nobot.dcm")), start)
    assert a == b and len(a) == 6 * fragments


@pytest.mark.parametrize("cut", [3, 8, 200])
def test_local_scan_truncated(tmp_path, cut) -> None:
    """A file cut inside an item header or value: the same error class both ways."""
    path = write_dicom(
        tmp_path / "nobot.dcm", U16, transfer_syntax=uid.RLELossless, offset_table="none"
    )
    data = Path(path).read_bytes()
    first = index_frames(path).ranges
    end = int(first.offsets[3]) - 8 + cut  # inside the 4th item
    (tmp_path / "cut.dcm").write_bytes(data[:end])
    fsspec.filesystem("memory").pipe("/cut.dcm", data[:end])
    errors = []
    for url in (str(tmp_path / "cut.dcm"), "memory://cut.dcm"):
        with pytest.raises(DicomDaskError) as info:
            index_frames(url)
        errors.append(type(info.value))
    assert errors[0] is errors[1]
