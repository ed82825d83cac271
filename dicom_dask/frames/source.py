"""One file or object as a [`Source`][dicom_dask.frames.source.Source]: its filesystem, path,
URL, size and identity; [`BlockReader`][dicom_dask.frames.source.BlockReader] reads its header
in blocks, keeping what it read."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from dicom_dask.compat import strip_protocol
from dicom_dask.errors import ReadError, SourceNotFoundError
from dicom_dask.frames.fetch import call_fs, check_range_read, fetch_ranges, pread
from dicom_dask.frames.ranged_get import Head, read_head, read_heads, supports_head
from dicom_dask.frames.storage import canonical_url, redact, resolve_fs
from dicom_dask.frames.version import file_identity, local_identity
from dicom_dask.types import StorageOptions

__all__ = [
    "BlockReader",
    "Source",
    "file_identity",
    "open_file",
    "open_object",
    "open_reader",
    "open_readers",
]


@dataclass(frozen=True)
class Source:
    """One file or object: its filesystem, path, canonical URL and size."""

    fs: fsspec.AbstractFileSystem
    path: str
    url: str
    size: int
    #: What else identifies this version of the file, as the filesystem reported it with
    #: the size: ``etag``, ``generation``, ``mtime`` (strings; absent when not reported).
    identity: Mapping[str, str] = field(default_factory=dict)

    def _check_range(self, start: int, stop: int) -> None:
        if start < 0 or stop > self.size or stop < start:
            raise ReadError(
                f"{redact(self.url)}: byte range [{start}, {stop}) lies outside the file "
                f"of {self.size} bytes"
            )

    def read(self, start: int, stop: int) -> bytes:
        """Return the bytes ``[start, stop)``; raise [`ReadError`][dicom_dask.errors.ReadError] when
        short."""
        self._check_range(start, stop)
        if stop == start:
            return b""
        if type(self.fs) is LocalFileSystem:  # one pread, without fsspec's file object
            data = call_fs(self.url, pread, self.path, start, stop)
        else:
            data = call_fs(self.url, self.fs.cat_file, self.path, start=start, end=stop)
        check_range_read(self.url, start, stop, data, size=self.size)
        return bytes(data)

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Return the bytes of several ``(start, stop)`` ranges in one call."""
        if not ranges:
            return []
        for start, stop in ranges:
            self._check_range(start, stop)
        if len(ranges) == 1:
            return [self.read(*ranges[0])]
        return fetch_ranges(self.fs, [(self.url, self.path, a, b) for a, b in ranges])


def _resolve(
    url: str | os.PathLike[str],
    storage_options: StorageOptions,
    filesystem: fsspec.AbstractFileSystem | None,
) -> tuple[str, fsspec.AbstractFileSystem, str]:
    curl = canonical_url(url)
    if filesystem is not None:
        return curl, filesystem, strip_protocol(filesystem, curl)
    fs, path = resolve_fs(curl, storage_options)
    return curl, fs, path


def open_file(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    filesystem: fsspec.AbstractFileSystem | None = None,
    info: Mapping[str, Any] | None = None,
) -> Source:
    """Resolve ``url`` to a `Source` (one metadata request for its size).

    With ``info`` (what a listing reported for the file: an entry of fsspec's
    ``find(detail=True)`` or ``ls(detail=True)`` with its ``size``, ETag...), no request is
    sent.
    """
    curl, fs, path = _resolve(url, storage_options, filesystem)
    if info is not None and info.get("size") is not None:
        return _from_info(curl, fs, path, info)
    if type(fs) is LocalFileSystem:  # os.stat: fsspec's info() costs more than a header
        st = call_fs(curl, os.stat, path)
        if stat.S_ISDIR(st.st_mode):
            raise ReadError(f"{redact(curl)}: is a directory, expected a DICOM file")
        return Source(fs=fs, path=path, url=curl, size=int(st.st_size), identity=local_identity(st))
    info = call_fs(curl, fs.info, path)
    if info.get("size") is None:
        target = getattr(fs, "fs", None)  # blockcache:: reports no size; its target does
        if isinstance(target, fsspec.AbstractFileSystem) and info.get("type") != "directory":
            info = {**info, "size": call_fs(curl, target.info, path).get("size")}
    return _from_info(curl, fs, path, info)


def _from_info(
    url: str, fs: fsspec.AbstractFileSystem, path: str, info: Mapping[str, Any]
) -> Source:
    if info.get("type") == "directory":
        raise ReadError(f"{redact(url)}: is a directory, expected a DICOM file")
    size = info.get("size")
    if size is None:
        raise ReadError(f"{redact(url)}: the filesystem does not report the size of this file")
    if info.get("islink") and type(fs) is LocalFileSystem:
        # fsspec lists a symbolic link with its own time; reads see its target's
        st = call_fs(url, os.stat, path)
        return Source(fs=fs, path=path, url=url, size=int(st.st_size), identity=local_identity(st))
    return Source(fs=fs, path=path, url=url, size=int(size), identity=file_identity(info))


def open_reader(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    filesystem: fsspec.AbstractFileSystem | None = None,
    info: Mapping[str, Any] | None = None,
    first_block: int = 65536,
) -> BlockReader:
    """Open ``url`` to read its header: a [`BlockReader`][dicom_dask.frames.source.BlockReader]
    whose [`requests`][dicom_dask.frames.source.BlockReader.requests] count the open's.

    With ``info`` (a listing's entry, see [`open_file`][dicom_dask.frames.source.open_file])
    nothing is requested until the header is read. Without it, over HTTP, S3 and GCS, one
    ranged GET of the first ``first_block`` bytes tells the size and identity as well
    (its ``Content-Range`` and ``ETag`` / ``Last-Modified`` / generation): one request, not a
    HEAD and a GET. Other filesystems ask for the size first (one metadata request).
    """
    curl, fs, path = _resolve(url, storage_options, filesystem)
    if info is not None and info.get("size") is not None:
        return BlockReader(_from_info(curl, fs, path, info), first_block=first_block)
    if type(fs) is not LocalFileSystem and supports_head(fs):
        try:
            head = call_fs(curl, read_head, fs, path, first_block)
        except SourceNotFoundError:
            head = None  # a folder, or no such file: info() tells which (error path only)
        if head is not None:
            return _head_reader(curl, fs, path, head, first_block)
    source = open_file(curl, filesystem=fs)
    return BlockReader(source, first_block=first_block, requests=1)


def open_object(
    url: str, *, filesystem: fsspec.AbstractFileSystem, first_block: int = 65536
) -> BlockReader | None:
    """A named object of an object store (S3, GCS) opened with its first block, or
    ``None`` when no object has that name (a prefix of objects, a "folder", may have it).

    One ranged GET, retried as reads are, tells both: the object is there (its reply
    carries the size and identity, as in
    [`open_reader`][dicom_dask.frames.source.open_reader]) or it is not (``404``). This
    is what a metadata request (``HEAD``) would tell, without the request: when the name
    is a file, its header's first block is already read. Failures other than a missing
    object raise, naming ``url``.
    """
    curl, fs, path = _resolve(url, None, filesystem)
    try:
        head = call_fs(curl, read_head, fs, path, first_block)
    except SourceNotFoundError:
        return None
    if head is None:  # the range was refused: an empty object; open_file names the size
        return BlockReader(open_file(curl, filesystem=fs), first_block=first_block, requests=2)
    return _head_reader(curl, fs, path, head, first_block)


def _head_reader(
    url: str, fs: fsspec.AbstractFileSystem, path: str, head: Head, first_block: int
) -> BlockReader:
    size = len(head.data) if head.size is None else head.size  # a GET from 0 tells the size
    source = Source(fs=fs, path=path, url=url, size=size, identity=file_identity(head.info))
    return BlockReader(source, first_block=first_block, prefix=head.data, requests=1)


def open_readers(
    urls: Sequence[str],
    *,
    filesystem: fsspec.AbstractFileSystem,
    first_block: int = 65536,
    concurrency: int = 32,
) -> list[BlockReader | None]:
    """[`open_reader`][dicom_dask.frames.source.open_reader] of many files of one
    filesystem at once: their first blocks in one batch of ranged GETs (HTTP, S3, GCS), at
    most ``concurrency`` in flight, so that N small files open in N requests and about
    N / ``concurrency`` latencies. A file whose GET failed, or a filesystem without such a
    request, gives ``None``: open it with `open_reader` (which retries and names the
    error)."""
    if type(filesystem) is LocalFileSystem or not supports_head(filesystem):
        return [None] * len(urls)
    resolved = [_resolve(u, None, filesystem) for u in urls]
    curls, paths = [c for c, _, _ in resolved], [p for _, _, p in resolved]
    heads = read_heads(filesystem, paths, first_block, concurrency=concurrency)
    return [
        _head_reader(u, filesystem, p, h, first_block) if isinstance(h, Head) else None
        for u, p, h in zip(curls, paths, heads, strict=True)
    ]


class BlockReader(io.RawIOBase):
    """A read-only, seekable file over a `Source` that fetches growing blocks.

    It keeps one contiguous prefix of the file in memory, extended by requests that
    double in size, so that a header of any length costs few requests and the
    bytes after it (offset tables, first fragments) are often already there.
    """

    def __init__(
        self, source: Source, *, first_block: int = 65536, prefix: bytes = b"", requests: int = 0
    ) -> None:
        super().__init__()
        self.source = source
        self.first_block = int(first_block)
        #: ``prefix``: the file's first bytes, already read (by the request that opened it).
        self._buffer = bytearray(prefix[: source.size])
        self._pos = 0
        #: Number of requests sent for this reader (``requests``: those that opened it).
        self.requests = int(requests)

    # -- io.RawIOBase --------------------------------------------------------
    @property
    def name(self) -> str:
        """The URL (what ``io.BufferedReader.name`` reports)."""
        return self.source.url

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        else:
            pos = self.source.size + offset
        if pos < 0:
            raise OSError(f"{redact(self.source.url)}: seek to negative offset {pos}")
        self._pos = pos
        return pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.source.size - self._pos
        stop = min(self._pos + size, self.source.size)
        if stop <= self._pos:
            return b""
        self._ensure(stop)
        data = bytes(self._buffer[self._pos : stop])
        self._pos = stop
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    # -- block cache ---------------------------------------------------------
    def _ensure(self, stop: int) -> None:
        have = len(self._buffer)
        if stop <= have:
            return
        grow = max(self.first_block, have)  # doubles the prefix at every request
        new_stop = min(max(stop, have + grow), self.source.size)
        self._buffer += self.source.read(have, new_stop)
        self.requests += 1

    def cached(self, start: int, stop: int) -> bytes | None:
        """Return ``[start, stop)`` if it is already in memory, else ``None``."""
        if stop <= len(self._buffer):
            return bytes(self._buffer[start:stop])
        return None

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Return several ranges, from memory where possible, the rest in one call."""
        out: list[bytes | None] = [self.cached(a, b) for a, b in ranges]
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            fetched = self.source.read_ranges([ranges[i] for i in missing])
            self.requests += 1
            for i, data in zip(missing, fetched, strict=True):
                out[i] = data
        return [v for v in out if v is not None]
