"""DicomStore against zarr's own conformance suite, plus DICOM-backed behaviour."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.core.sync import sync
from zarr.testing.store import StoreTests

import dicom_dask
from dicom_dask import DicomStore
from dicom_dask.errors import DicomDaskError
from dicom_dask.testing import write_dicom


class TestDicomStore(StoreTests[DicomStore, cpu.Buffer]):
    store_cls = DicomStore
    buffer_cls = cpu.Buffer

    async def set(self, store: DicomStore, key: str, value: Buffer) -> None:
        store._memory[key] = value.to_bytes()

    async def get(self, store: DicomStore, key: str) -> Buffer:
        return self.buffer_cls.from_bytes(store._memory[key])

    @pytest.fixture
    def store_kwargs(self) -> dict[str, Any]:
        return {"manifests": {}, "documents": {}, "read_only": False}

    def test_store_repr(self, store: DicomStore) -> None:
        assert repr(store).startswith("DicomStore(")

    def test_store_supports_writes(self, store: DicomStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: DicomStore) -> None:
        assert store.supports_listing


@pytest.fixture
def rle_file(tmp_path) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 4000, (6, 16, 24), dtype=np.uint16)
    path = write_dicom(tmp_path / "f.dcm", arr, transfer_syntax="1.2.840.10008.1.2.5")
    return path, arr


def test_dicom_store_is_read_only_and_pickles(rle_file) -> None:
    path, arr = rle_file
    frames = dicom_dask.open_frames(path)
    store = frames.store
    assert store.read_only
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    assert clone._filesystems == {}
    assert len(pickle.dumps(store)) < 10_000
    assert dicom_dask.open_frames(path).store == store  # equal inputs, equal stores
    with pytest.raises((ValueError, DicomDaskError)):
        zarr.open_array(store, mode="r")[0] = 1
    with pytest.raises(ValueError, match="read-only"):
        sync(store.set("c/0/0/0", cpu.Buffer.from_bytes(b"x")))
    np.testing.assert_array_equal(zarr.open_array(clone, mode="r")[...], arr)


async def test_chunk_bytes_and_ranges(rle_file) -> None:
    path, _ = rle_file
    frames = dicom_dask.open_frames(path)
    store = frames.store
    ref = store.resolve("c/2/0/0")
    assert ref is not None
    with open(path, "rb") as f:
        f.seek(ref.offset)
        raw = f.read(ref.length)
    proto = default_buffer_prototype()
    got = await store.get("c/2/0/0", proto)
    assert got is not None and got.to_bytes() == raw
    part = await store.get("c/2/0/0", proto, byte_range=RangeByteRequest(2, 10))
    assert part is not None and part.to_bytes() == raw[2:10]
    tail = await store.get("c/2/0/0", proto, byte_range=SuffixByteRequest(4))
    assert tail is not None and tail.to_bytes() == raw[-4:]
    assert await store.get("c/99/0/0", proto) is None
    assert await store.get(".zarray", proto) is None
    assert await store.getsize("c/2/0/0") == ref.length
    with pytest.raises(FileNotFoundError):
        await store.getsize("c/99/0/0")
    keys = [k async for k in store.list()]
    assert sorted(keys) == sorted(["zarr.json"] + [f"c/{i}/0/0" for i in range(6)])
    assert [k async for k in store.list_dir("")] == ["c", "zarr.json"]


def test_concurrent_remote_gets_are_coalesced(rle_file) -> None:
    """zarr's concurrent chunk reads of a file on a filesystem other than the local disk
    become merged ranged requests (neighbouring frames in one), with the same bytes and
    pixels as local reads; a failing request fails the reads waiting on it with the
    store's error."""
    from dicom_dask.errors import ReadError
    from tests.conftest import CountingFileSystem

    class Flaky(CountingFileSystem):
        fail = False

        def cat_ranges(self, paths, starts, ends, max_gap=None, on_error="return", **kw):  # type: ignore[no-untyped-def]
            if self.fail:
                return [PermissionError("injected")] * len(paths)
            return super().cat_ranges(paths, starts, ends, on_error=on_error)

    path, arr = rle_file
    fs = Flaky()
    frames = dicom_dask.open_frames(f"counting://{path}", storage_options=lambda: fs)
    fs.reset()
    np.testing.assert_array_equal(frames.zarr[...], arr)
    assert 1 <= fs.requests < len(arr)  # 6 frames, contiguous: fewer requests than chunks
    local = dicom_dask.open_frames(path)
    proto = default_buffer_prototype()

    async def both(key: str) -> tuple[bytes, bytes]:
        a = await frames.store.get(key, proto, byte_range=RangeByteRequest(1, 9))
        b = await local.store.get(key, proto, byte_range=RangeByteRequest(1, 9))
        assert a is not None and b is not None
        return a.to_bytes(), b.to_bytes()

    a, b = sync(both("c/3/0/0"))
    assert a == b
    fs.fail = True
    with pytest.raises(ReadError, match="injected"):
        frames.zarr[...]
