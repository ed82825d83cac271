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
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype

from dicom_dask.chunks.manifest import ChunkManifest, ChunkRef, parse_chunk_key
from dicom_dask.compat import strip_protocol
from dicom_dask.enums import FrameEncoding
from dicom_dask.frames.dicomweb import fetch_frames
from dicom_dask.frames.fetch import MERGE, MergePolicy, call_fs, fetch_spans, held_by, pread
from dicom_dask.frames.storage import resolve_fs
from dicom_dask.frames.threads import Batch, LoopPass, settle
from dicom_dask.frames.version import FileVersion
from dicom_dask.types import StorageOptions

__all__ = ["DicomStore"]


def _encode_document(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return json.dumps(value, separators=(",", ":")).encode()


def _part(ref: ChunkRef, start: int, stop: int) -> ChunkRef:
    """The reference to bytes ``[start, stop)`` of ``ref``'s chunk."""
    if (start, stop) == (0, ref.length):
        return ref
    return replace(ref, offset=ref.offset + start, length=max(0, stop - start))


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
        [`resolve_fs`][dicom_dask.frames.storage.resolve_fs]): credentials stay out of
        pickles.
    read_only : bool
        Stores built from DICOM are read-only (the source is never written to);
        a writable store keeps written keys in memory only.
    versions : mapping of str to FileVersion, optional
        URL -> the size and identity its index recorded: every read checks that the bytes
        come from that version of the file (what each ranged GET's reply says, or an
        ``fstat`` of the local file), at no extra request, and raises
        [`StaleIndexError`][dicom_dask.errors.StaleIndexError] when the file changed.
    """

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True
    supports_partial_writes = False

    def __init__(
        self,
        manifests: Mapping[str, ChunkManifest] | None = None,
        documents: Mapping[str, Any] | None = None,
        *,
        storage_options: StorageOptions = None,
        read_only: bool = True,
        versions: Mapping[str, FileVersion] | None = None,
    ) -> None:
        super().__init__(read_only=read_only)
        self._versions: dict[str, FileVersion] = dict(versions or {})
        self._manifests = {self._norm(k): v for k, v in (manifests or {}).items()}
        self._documents = {k: _encode_document(v) for k, v in (documents or {}).items()}
        self._memory: dict[str, bytes] = {}
        self._deleted: set[str] = set()
        self.storage_options: StorageOptions = (
            storage_options if callable(storage_options) else dict(storage_options or {})
        )
        self._filesystems: dict[str, fsspec.AbstractFileSystem] = {}
        self._local_files: dict[str, str | None] = {}
        self._sync_io: bool | None = None
        #: Remote reads requested in one event-loop pass, fetched together.
        self._reads: LoopPass[ChunkRef] = LoopPass(self._flush_reads)
        self._flushing: set[asyncio.Task[None]] = set()

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
            and self._versions == other._versions
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        arrays = ", ".join(repr(k.rstrip("/")) for k in self._manifests)
        return f"DicomStore(arrays=[{arrays}], read_only={self.read_only})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_filesystems"] = {}
        state["_local_files"] = {}
        state["_sync_io"] = None
        del state["_reads"]
        state["_flushing"] = set()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reads = LoopPass(self._flush_reads)

    def with_read_only(self, read_only: bool = False) -> DicomStore:
        # docstring inherited
        new = type(self)(
            self._manifests,
            self._documents,
            storage_options=self.storage_options,
            read_only=read_only,
            versions=self._versions,
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

    def version(self, url: str | None) -> FileVersion | None:
        """The version of ``url`` the store's reads are checked against (``None``: none
        recorded)."""
        return None if url is None else self._versions.get(url)

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
        return fs, strip_protocol(fs, url)

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

    def _local_path(self, ref: ChunkRef) -> str | None:
        """The path of ``ref``'s file when it is on the local disk, else ``None``."""
        if ref.url is None or ref.data is not None or ref.encoding is FrameEncoding.WADO:
            return None
        return self._local_file(ref.url)

    def _local_file(self, url: str) -> str | None:
        try:
            return self._local_files[url]
        except KeyError:
            fs, path = self.filesystem(url)
            local = self._local_files[url] = path if type(fs) is LocalFileSystem else None
            return local

    @property
    def local_only(self) -> bool:
        """Whether every chunk is in memory or in a file on the local disk (zarr's
        synchronous read path then suits this store; see ``_supports_sync_io``)."""
        return self._supports_sync_io

    @property
    def _supports_sync_io(self) -> bool:
        """Whether zarr's synchronous read path suits this store: every chunk is in
        memory or in a local file. Remote chunks stay on the asynchronous path, which
        merges neighbouring reads into one request."""
        # zarr >= 3.4 consults this before reading through get_sync in threads
        if self._sync_io is None:
            self._sync_io = all(
                not (manifest.encoding == FrameEncoding.WADO.value).any()
                and all(self._local_file(url) is not None for url in manifest.urls)
                for manifest in self._manifests.values()
            )
        return self._sync_io

    def fetch_refs(self, refs: Sequence[ChunkRef], *, policy: MergePolicy = MERGE) -> list[bytes]:
        """The bytes of chunk references: the one path from references to bytes.

        Inline chunks are their data; DICOMweb frames come by WADO-RS (one request per
        run of consecutive frames of an instance); byte ranges go to
        [`fetch_spans`][dicom_dask.frames.fetch.fetch_spans] (``os.pread`` for local
        files, merged concurrent requests under ``policy`` elsewhere), checked to come
        from the versions of the files the store was given. A failed request raises
        [`ReadError`][dicom_dask.errors.ReadError] (a changed file
        [`StaleIndexError`][dicom_dask.errors.StaleIndexError]) whose ``requests``
        attribute lists the indices (into ``refs``) of the chunks it held.
        """
        out: list[bytes] = [b""] * len(refs)
        spans: list[tuple[str, int, int]] = []
        owners: list[int] = []
        wado: dict[str, list[int]] = {}
        for i, ref in enumerate(refs):
            if ref.data is not None:
                out[i] = ref.data
            elif ref.encoding is FrameEncoding.WADO:
                assert ref.url is not None
                wado.setdefault(ref.url, []).append(i)
            elif ref.length > 0:
                assert ref.url is not None
                spans.append((ref.url, ref.offset, ref.offset + ref.length))
                owners.append(i)
        for url, indices in wado.items():  # DICOMweb: frame numbers, not byte ranges
            numbers = [refs[i].offset for i in indices]
            frames = fetch_frames(url, numbers, storage_options=self.storage_options)
            for i in indices:
                out[i] = frames[refs[i].offset]
        if spans:
            with held_by([[o] for o in owners]):
                blobs = fetch_spans(
                    spans, filesystem=self.filesystem, policy=policy, versions=self._versions
                )
            for i, blob in zip(owners, blobs, strict=True):
                out[i] = blob
        return out

    def read_ref(self, ref: ChunkRef, start: int = 0, stop: int | None = None) -> bytes:
        """Read (part of) a reference's bytes synchronously (see `fetch_refs`)."""
        if ref.encoding is FrameEncoding.WADO:  # a DICOMweb frame: fetched whole
            return self.fetch_refs([ref])[0][start:stop]
        stop = ref.length if stop is None else stop
        if ref.data is not None:
            return ref.data[start:stop]
        return self.fetch_refs([_part(ref, start, stop)])[0]

    def local_reader(self, key: str) -> Callable[[], bytes | None] | None:
        """A synchronous reader of chunk ``key``'s bytes when they come from a file on
        the local disk (or from memory), else ``None``.

        The zarr codec calls the reader in its decoding thread, so reading and decoding a
        chunk cost one hop to a worker thread instead of two awaits in zarr's event
        loop. The reader returns ``None`` for a missing chunk and checks what it reads
        as `DicomStore.get` does.
        """
        if key in self._memory or key in self._documents:
            return None
        self._is_open = True
        if self._supports_sync_io:  # every chunk is local: resolve it in the reading thread

            def read_any() -> bytes | None:
                ref = self.resolve(key)
                return None if ref is None else self._read_checked(ref, key)

            return read_any
        ref = self.resolve(key)
        if ref is None:
            return lambda: None
        if ref.data is None and self._local_path(ref) is None:
            return None
        return lambda: self._read_checked(ref, key)

    def _read_checked(self, ref: ChunkRef, key: str) -> bytes:
        data = self._read_part(ref, 0, ref.length)
        assert data is not None
        ref.check(data, f"chunk {key!r}")
        return data

    # -- reads ---------------------------------------------------------------------
    def _value(self, key: str) -> bytes | None:
        if key in self._memory:
            return self._memory[key]
        if key in self._deleted:
            return None
        return self._documents.get(key)

    def _read_sync(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        """``key``'s bytes (or ``byte_range`` of them), read in the calling thread."""
        value = self._value(key)
        if value is not None:
            start, stop = _byte_slice(len(value), byte_range)
            return value[start:stop]
        ref = self.resolve(key)
        if ref is None:
            return None
        if ref.encoding is FrameEncoding.WADO:  # length known once fetched
            data = self.read_ref(ref)
            ref.check(data, f"chunk {key!r}")
            start, stop = _byte_slice(len(data), byte_range)
            return data[start:stop]
        start, stop = _byte_slice(ref.length, byte_range)
        part = self._read_part(ref, start, stop)
        data = self.read_ref(ref, start, stop) if part is None else part
        if start == 0 and stop == ref.length:
            ref.check(data, f"chunk {key!r}")
        return data

    def _read_part(self, ref: ChunkRef, start: int, stop: int) -> bytes | None:
        """``ref[start:stop]`` when it is in memory or on the local disk, else ``None``."""
        if ref.data is not None:
            return ref.data[start:stop]
        if stop <= start:
            return b""
        local = self._local_path(ref)
        if local is None:
            return None
        url = ref.url or local
        version = self.version(ref.url)
        return call_fs(
            url, pread, local, ref.offset + start, ref.offset + stop, version=version, label=url
        )

    async def get(
        self,
        key: str,
        prototype: BufferPrototype,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        # docstring inherited
        if not self._is_open:
            await self._open()
        ref = None if key in self._memory or key in self._documents else self.resolve(key)
        if ref is not None and ref.encoding is not FrameEncoding.WADO:
            start, stop = _byte_slice(ref.length, byte_range)
            # a page-cache read of one tile takes less than a hop to a worker thread
            data = self._read_part(ref, start, stop)
            if data is None:
                data = await self._read_coalesced(ref, start, stop)
            if start == 0 and stop == ref.length:
                ref.check(data, f"chunk {key!r}")
            return prototype.buffer.from_bytes(data)
        if ref is not None:  # a DICOMweb frame: fetched in a worker thread
            data = await asyncio.to_thread(self._read_sync, key, byte_range)
        else:
            data = self._read_sync(key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    # -- synchronous IO: zarr's FusedCodecPipeline (zarr >= 3.4) reads through these ---
    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """Read ``key`` (or ``byte_range`` of it) in the calling thread.

        Remote chunks are read one request each here; the asynchronous
        `DicomStore.get` coalesces neighbouring ones.
        """
        from zarr.core.buffer import default_buffer_prototype

        self._is_open = True
        data = self._read_sync(key, byte_range)
        if data is None:
            return None
        return (prototype or default_buffer_prototype()).buffer.from_bytes(data)

    def set_sync(self, key: str, value: Buffer) -> None:
        """Keep ``value`` under ``key`` in memory (the source is never written to)."""
        self._is_open = True
        self._set(key, value)

    def delete_sync(self, key: str) -> None:
        """Forget ``key`` (the source is never written to)."""
        self._is_open = True
        self._delete(key)

    # -- coalesced remote reads ----------------------------------------------------
    async def _read_coalesced(self, ref: ChunkRef, start: int, stop: int) -> bytes:
        """Read ``ref[start:stop]`` together with the other remote reads asked for in
        this pass of the event loop (a [`LoopPass`][dicom_dask.frames.threads.LoopPass]):
        zarr starts up to ``async.concurrency`` chunk reads at once, and neighbouring
        tiles become one ranged request."""
        data: bytes = await self._reads.submit(_part(ref, start, stop))
        return data

    def _flush_reads(self, loop: asyncio.AbstractEventLoop, batch: Batch[ChunkRef]) -> None:
        by_url: dict[str | None, Batch[ChunkRef]] = {}
        for item in batch:
            by_url.setdefault(item[0].url, []).append(item)
        for items in by_url.values():  # a failed file fails only its own chunks
            task = loop.create_task(self._fetch_batch(items))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _fetch_batch(self, batch: Batch[ChunkRef]) -> None:
        try:
            blobs = await asyncio.to_thread(self.fetch_refs, [ref for ref, _ in batch])
        except BaseException as exc:
            settle(batch, exc)
            return
        settle(batch, blobs)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        # docstring inherited
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def get_ranges(
        self,
        key: str,
        byte_ranges: Sequence[ByteRequest | None],
        *,
        prototype: BufferPrototype,
        max_concurrency: int = 10,
        max_gap_bytes: int = 1 << 20,
        max_coalesced_bytes: int = 16 << 20,
    ) -> AsyncIterator[Sequence[tuple[int, Buffer | None]]]:
        """Read several byte ranges of one key (zarr >= 3.3 calls this for partial shards).

        Ranges of a chunk that lies in a file are merged where the gap between them is
        at most ``max_gap_bytes`` (up to ``max_coalesced_bytes`` per merged read), and
        every merged range is fetched in a single ``cat_ranges`` call, concurrently on
        async filesystems (at most `dicom_dask.config.io_concurrency()`
        requests in flight, which stands in for ``max_concurrency``). Yields one batch
        of ``(input_index, buffer)``; an absent key raises an ``ExceptionGroup`` holding
        a ``FileNotFoundError``, as zarr's own implementation does.
        """
        del max_concurrency  # fetch_ranges bounds the requests in flight itself
        value = self._value(key)
        ref = None if value is not None else self.resolve(key)
        if value is None and ref is None:
            raise ExceptionGroup(f"get_ranges({key!r})", [FileNotFoundError(key)])
        if value is None and ref is not None and (ref.url is None or ref.data is not None):
            value = ref.data
        if value is None and ref is not None and ref.encoding is FrameEncoding.WADO:
            value = await asyncio.to_thread(self.read_ref, ref)
        if value is not None or ref is None or ref.url is None:
            data = value or b""
            spans = [_byte_slice(len(data), r) for r in byte_ranges]
            yield [(i, prototype.buffer.from_bytes(data[a:b])) for i, (a, b) in enumerate(spans)]
            return
        spans = [_byte_slice(ref.length, r) for r in byte_ranges]
        zarrs = MergePolicy(gap=max_gap_bytes, limit=max_coalesced_bytes, waste=1.0)
        parts = [_part(ref, a, b) for a, b in spans]
        fetched = await asyncio.to_thread(self.fetch_refs, parts, policy=zarrs)
        out: list[tuple[int, Buffer | None]] = []
        for i, ((a, b), data) in enumerate(zip(spans, fetched, strict=True)):
            if (a, b) == (0, ref.length):
                ref.check(data, f"chunk {key!r}")
            out.append((i, prototype.buffer.from_bytes(data)))
        yield out

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
    def _set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(
                f"DicomStore.set(): `value` must be a Buffer instance. Got an instance "
                f"of {type(value)} instead."
            )
        self._memory[key] = value.to_bytes()
        self._deleted.discard(key)

    def _delete(self, key: str) -> None:
        self._check_writable()
        self._memory.pop(key, None)
        if key in self._documents or self.resolve(key) is not None:
            self._deleted.add(key)

    async def set(self, key: str, value: Buffer) -> None:
        # docstring inherited
        self._set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        # docstring inherited
        if not await self.exists(key):
            await self.set(key, value)

    async def delete(self, key: str) -> None:
        # docstring inherited
        self._delete(key)

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
