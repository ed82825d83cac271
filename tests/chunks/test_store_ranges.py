"""``DicomStore.get_ranges``: zarr >= 3.3 reads partial shards through it, coalesced."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr
from zarr.abc.store import RangeByteRequest, Store
from zarr.core.buffer import default_buffer_prototype

from dicom_dask import DicomStore
from dicom_dask.chunks.manifest import ChunkManifest
from tests.conftest import CountingFileSystem

HAS_GET_RANGES = hasattr(Store, "get_ranges")


def _sharded_store(tmp_path, fs: CountingFileSystem) -> tuple[DicomStore, np.ndarray]:
    """A 64 x 64 uint16 array in one shard of 16 x 16 inner chunks, written by zarr,
    served by a DicomStore whose single chunk is the shard file's byte range."""
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    written = zarr.create_array(
        zarr.storage.LocalStore(tmp_path / "a"),
        shape=data.shape,
        dtype=data.dtype,
        shards=(64, 64),
        chunks=(16, 16),
        compressors=None,
    )
    written[...] = data
    shard = tmp_path / "a" / "c" / "0" / "0"
    manifest = ChunkManifest(
        [f"counting://{shard}"],
        np.zeros((1, 1), dtype=np.int32),
        np.zeros((1, 1), dtype=np.uint64),
        np.full((1, 1), shard.stat().st_size, dtype=np.uint64),
    )
    documents = {"zarr.json": (tmp_path / "a" / "zarr.json").read_bytes()}
    return DicomStore({"": manifest}, documents, storage_options=lambda: fs), data


@pytest.mark.skipif(not HAS_GET_RANGES, reason="zarr < 3.3 has no Store.get_ranges")
def test_partial_shard_read_is_coalesced(tmp_path, monkeypatch) -> None:
    fs = CountingFileSystem()
    store, data = _sharded_store(tmp_path, fs)
    calls: list[int] = []
    original = DicomStore.get_ranges

    def spy(self: DicomStore, key: str, byte_ranges: Any, **kwargs: Any) -> Any:
        calls.append(len(byte_ranges))
        return original(self, key, byte_ranges, **kwargs)

    monkeypatch.setattr(DicomStore, "get_ranges", spy)
    array = zarr.open_array(store, mode="r")
    np.testing.assert_array_equal(array[:, :16], data[:, :16])  # 4 inner chunks, one column
    assert calls == [4]
    # the shard index, then the 4 chunks (1.5 KiB apart) in one merged read; reading
    # chunk by chunk (zarr < 3.3) costs 1 + 4 requests
    assert fs.requests == 2 < 1 + 4


async def test_get_ranges_gaps_limits_and_missing(tmp_path) -> None:
    fs = CountingFileSystem()
    store, _ = _sharded_store(tmp_path, fs)
    raw = (tmp_path / "a" / "c" / "0" / "0").read_bytes()
    proto = default_buffer_prototype()
    ranges = [RangeByteRequest(4000, 4100), RangeByteRequest(0, 10), None, RangeByteRequest(20, 30)]
    got: dict[int, bytes] = {}
    async for batch in store.get_ranges("c/0/0", ranges, prototype=proto, max_gap_bytes=16):
        for i, buf in batch:
            assert buf is not None
            got[i] = buf.to_bytes()
    assert got == {0: raw[4000:4100], 1: raw[:10], 2: raw, 3: raw[20:30]}
    assert fs.requests == 1  # the whole value covers every range: one merged read
    fs.reset()
    small = [RangeByteRequest(0, 10), RangeByteRequest(100, 110), RangeByteRequest(3000, 3010)]
    batches = [b async for b in store.get_ranges("c/0/0", small, prototype=proto, max_gap_bytes=8)]
    assert len(batches) == 1 and fs.requests == 3  # three reads in one cat_ranges call
    assert sorted(i for i, _ in batches[0]) == [0, 1, 2]
    # zarr's own limits, not the reader's waste rule: 90 unrequested bytes of 110 are merged
    fs.reset()
    got_pairs = [
        (i, buf.to_bytes())
        for b in [b async for b in store.get_ranges("c/0/0", small[:2], prototype=proto)]
        for i, buf in b
        if buf is not None
    ]
    assert sorted(got_pairs) == [(0, raw[:10]), (1, raw[100:110])] and fs.requests == 1
    first = [RangeByteRequest(0, 1)]
    doc = [b async for b in store.get_ranges("zarr.json", first, prototype=proto)]
    assert doc[0][0][1] is not None and doc[0][0][1].to_bytes() == b"{"
    with pytest.raises(ExceptionGroup) as info:
        async for _ in store.get_ranges("c/9/9", [None], prototype=proto):
            pass
    assert info.group_contains(FileNotFoundError)


def test_manifest_reshape_keeps_every_chunk_in_c_order() -> None:
    manifest = ChunkManifest(
        ("a.dcm", "b.dcm"),
        np.array([0, 1, -1, -2, 0, 1], dtype=np.int32),
        np.array([0, 100, 200, 0, 400, 500], dtype=np.uint64),
        np.arange(1, 7, dtype=np.uint64),
        np.array([0, 1, 0, 0, 1, 0], dtype=np.uint8),
        (b"inline",),
    )
    grid = manifest.reshape((1, 2, 3))
    assert grid.grid_shape == (1, 2, 3) and grid.inline == manifest.inline
    for flat, coords in enumerate(np.ndindex(1, 2, 3)):
        assert grid.get(coords) == manifest.get((flat,))
    with pytest.raises(ValueError):
        manifest.reshape((4, 2))
