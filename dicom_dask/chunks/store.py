"""``DicomStore``: a read-only zarr v3 store over DICOM frames.

It serves ``zarr.json`` documents and, for a chunk key, the *encoded* bytes that
the chunk manifest points at, read over fsspec. It holds no open file handle:
filesystems are rebuilt from ``storage_options`` on first use after unpickling.
Like fsspec's ``ReferenceFileSystem``, a store constructed writable also keeps
in-memory entries, so zarr's ``StoreTests`` conformance suite applies whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import fsspec
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype

from dicom_dask.chunks.manifest import ChunkManifest, ChunkRef, parse_chunk_key
from dicom_dask.enums import FrameEncoding
from dicom_dask.frames._io import StorageOptions, call_fs, resolve_fs
from dicom_dask.frames.dicomweb import fetch_frames

__all__ = ["DicomStore"]


def _encode_document(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return json.dumps(value, separators=(",", ":")).encode()


def _byte_slice(size: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    """Resolve ``byte_range`` against a value of ``size`` bytes to ``(start, stop)``."""
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        return min(byte_range.start, size), min(byte_range.end, size)
    if isinstance(byte_range, OffsetByteRequest):
        return min(byte_range.offset, size), size
    if isinstance(byte_range, SuffixByteRequest):
        return max(size - byte_range.suffix, 0), size
    raise TypeError(f"Unexpected byte_range, got {byte_range}.")


class DicomStore(Store):
    """A zarr v3 store whose chunks are byte ranges of DICOM files.

    Parameters
    ----------
    manifests : mapping of str to ChunkManifest, optional
        Array path (``""`` for a root array) -> its chunk manifest.
    documents : mapping of str to dict or bytes, optional
        Metadata documents by key (``"zarr.json"``, ``"level0/zarr.json"``, ...).
    storage_options : mapping or callable, optional
        fsspec options used to open every URL in the manifests, or a picklable
        zero-argument filesystem factory called in each process that reads (see
        [`dicom_dask.frames._io.resolve_fs`][dicom_dask.frames._io.resolve_fs]): credentials stay
        out of pickles.
    read_only : bool
        Stores built from DICOM are read-only (the source is never written to);
        a writable store keeps written keys in memory only.
    """

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True
    supports_partial_writes = False  # type: ignore[assignment]

    def __init__(
        self,
        manifests: Mapping[str, ChunkManifest] | None = None,
        documents: Mapping[str, Any] | None = None,
        *,
        storage_options: StorageOptions = None,
        read_only: bool = True,
    ) -> None:
        super().__init__(read_only=read_only)
        self._manifests = {self._norm(k): v for k, v in (manifests or {}).items()}
        self._documents = {k: _encode_document(v) for k, v in (documents or {}).items()}
        self._memory: dict[str, bytes] = {}
        self._deleted: set[str] = set()
        self.storage_options: StorageOptions = (
            storage_options if callable(storage_options) else dict(storage_options or {})
        )
        self._filesystems: dict[str, fsspec.AbstractFileSystem] = {}

    @staticmethod
    def _norm(path: str) -> str:
        path = path.strip("/")
        return path + "/" if path else ""

    # -- identity, pickling ------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        # docstring inherited
        return (
            isinstance(other, type(self))
            and self._manifests == other._manifests
            and self._documents == other._documents
            and self._memory == other._memory
            and self._deleted == other._deleted
            and self.storage_options == other.storage_options
            and self.read_only == other.read_only
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        arrays = ", ".join(repr(k.rstrip("/")) for k in self._manifests)
        return f"DicomStore(arrays=[{arrays}], read_only={self.read_only})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_filesystems"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def with_read_only(self, read_only: bool = False) -> DicomStore:
        # docstring inherited
        new = type(self)(
            self._manifests,
            self._documents,
            storage_options=self.storage_options,
            read_only=read_only,
        )
        new._memory = dict(self._memory)
        new._deleted = set(self._deleted)
        return new

    # -- public helpers ------------------------------------------------------------
    @property
    def manifests(self) -> Mapping[str, ChunkManifest]:
        """Array path -> chunk manifest."""
        return dict(self._manifests)

    @property
    def documents(self) -> Mapping[str, bytes]:
        """Metadata documents as bytes."""
        return dict(self._documents)

    def filesystem(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """The (cached) filesystem and path of ``url``."""
        if "::" in url:  # chained URLs carry their own options per link
            return resolve_fs(url, self.storage_options)
        protocol = url.split("://")[0] if "://" in url else "file"
        fs = self._filesystems.get(protocol)
        if fs is None:
            fs, path = resolve_fs(url, self.storage_options)
            self._filesystems[protocol] = fs
            return fs, path
        return fs, fs._strip_protocol(url)

    def resolve(self, key: str) -> ChunkRef | None:
        """The manifest reference behind chunk ``key``, or ``None``."""
        if key in self._deleted:
            return None
        for prefix, manifest in self._manifests.items():
            if key.startswith(prefix):
                coords = parse_chunk_key(key[len(prefix) :], len(manifest.grid_shape))
                if coords is not None:
                    return manifest.get(coords)
        return None

    def read_ref(self, ref: ChunkRef, start: int = 0, stop: int | None = None) -> bytes:
        """Read (part of) a reference's bytes synchronously."""
        if ref.encoding is FrameEncoding.WADO:  # a DICOMweb frame: fetched whole
            assert ref.url is not None
            frames = fetch_frames(ref.url, [ref.offset], storage_options=self.storage_options)
            return frames[ref.offset][start:stop]
        stop = ref.length if stop is None else stop
        if ref.data is not None:
            return ref.data[start:stop]
        assert ref.url is not None
        if stop <= start:
            return b""
        fs, path = self.filesystem(ref.url)
        data = call_fs(ref.url, fs.cat_file, path, start=ref.offset + start, end=ref.offset + stop)
        return bytes(data)

    # -- reads ---------------------------------------------------------------------
    def _value(self, key: str) -> bytes | None:
        if key in self._memory:
            return self._memory[key]
        if key in self._deleted:
            return None
        return self._documents.get(key)

    async def get(
        self,
        key: str,
        prototype: BufferPrototype,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        # docstring inherited
        if not self._is_open:
            await self._open()
        value = self._value(key)
        if value is not None:
            start, stop = _byte_slice(len(value), byte_range)
            return prototype.buffer.from_bytes(value[start:stop])
        ref = self.resolve(key)
        if ref is None:
            return None
        if ref.encoding is FrameEncoding.WADO:  # length known once fetched
            data = await asyncio.to_thread(self.read_ref, ref)
            ref.check(data, f"chunk {key!r}")
            start, stop = _byte_slice(len(data), byte_range)
            return prototype.buffer.from_bytes(data[start:stop])
        start, stop = _byte_slice(ref.length, byte_range)
        if ref.data is not None:
            return prototype.buffer.from_bytes(ref.data[start:stop])
        data = await asyncio.to_thread(self.read_ref, ref, start, stop)
        if start == 0 and stop == ref.length:
            ref.check(data, f"chunk {key!r}")
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        # docstring inherited
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        # docstring inherited
        return self._value(key) is not None or self.resolve(key) is not None

    async def getsize(self, key: str) -> int:
        # docstring inherited
        value = self._value(key)
        if value is not None:
            return len(value)
        ref = self.resolve(key)
        if ref is None:
            raise FileNotFoundError(key)
        if ref.encoding is FrameEncoding.WADO:
            return len(await asyncio.to_thread(self.read_ref, ref))
        return ref.length

    # -- writes (in memory only; the source is never written to) ------------------
    async def set(self, key: str, value: Buffer) -> None:
        # docstring inherited
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(
                f"DicomStore.set(): `value` must be a Buffer instance. Got an instance "
                f"of {type(value)} instead."
            )
        self._memory[key] = value.to_bytes()
        self._deleted.discard(key)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        # docstring inherited
        if not await self.exists(key):
            await self.set(key, value)

    async def delete(self, key: str) -> None:
        # docstring inherited
        self._check_writable()
        self._memory.pop(key, None)
        if key in self._documents or self.resolve(key) is not None:
            self._deleted.add(key)

    # -- listing -------------------------------------------------------------------
    def _keys(self) -> Iterable[str]:
        seen = set(self._memory)
        yield from self._memory
        for key in self._documents:
            if key not in seen and key not in self._deleted:
                seen.add(key)
                yield key
        for prefix, manifest in self._manifests.items():
            for key in manifest.keys(prefix):
                if key not in seen and key not in self._deleted:
                    yield key

    async def list(self) -> AsyncIterator[str]:
        # docstring inherited
        for key in list(self._keys()):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        for key in list(self._keys()):
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        prefix = prefix.rstrip("/")
        base = prefix + "/" if prefix else ""
        children: set[str] = set()
        for key in list(self._keys()):
            if key.startswith(base):
                children.add(key[len(base) :].split("/", 1)[0])
        for child in sorted(children):
            yield child
