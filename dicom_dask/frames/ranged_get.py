"""Ranged GETs that also tell the file's size and version.

fsspec's public ``cat_file`` returns the bytes only, so opening a remote file has cost a
metadata request (``info()``: a HEAD) for its size and ETag before the ranged GET of its
header. The reply to the ranged GET carries both already: ``Content-Range: bytes
0-16383/524288`` gives the size, ``ETag`` / ``Last-Modified`` / ``x-goog-generation`` the
version. [`read_head`][dicom_dask.frames.ranged_get.read_head] sends that one GET over
HTTP (fsspec's aiohttp session), S3 (s3fs) and GCS (gcsfs) and reports what it learnt in
the keys those filesystems' ``info()`` use, so that
[`file_identity`][dicom_dask.frames.version.file_identity] records the same identity as a
HEAD would. [`read_parts`][dicom_dask.frames.ranged_get.read_parts] sends any byte ranges
the same way, so that a read can check that the file is still the version it was indexed
from ([`fetch_ranges`][dicom_dask.frames.fetch.fetch_ranges] with ``versions``).

The two requests s3fs and gcsfs give no public form of (the reply's headers with the
body) go through [`s3_call`][dicom_dask.compat.s3_call] and
[`gcs_call`][dicom_dask.compat.gcs_call]; HTTP uses fsspec's public ``set_session``.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.asyn import sync

from dicom_dask.compat import gcs_call, s3_call
from dicom_dask.errors import RangeNotSupportedError, ReadError
from dicom_dask.frames.storage import redact

__all__ = [
    "Head",
    "check_range_read",
    "http_status",
    "read_head",
    "read_heads",
    "read_parts",
    "supports_head",
]

_CONTENT_RANGE = re.compile(r"bytes\s+(?:\d+-\d+|\*)/(\d+)")


@dataclass(frozen=True)
class Head:
    """Bytes of a file (its first ones, for a header) and what the reply said about the
    whole file."""

    #: ``[start, min(stop, size))`` of the file.
    data: bytes
    #: The size of the file in bytes (``None`` when the reply did not say: a ``206``
    #: without ``Content-Range``).
    size: int | None
    #: What identifies this version, in the keys the filesystem's ``info()`` uses
    #: (``ETag``, ``Last-Modified``, ``LastModified``, ``VersionId``, ``generation``).
    info: Mapping[str, Any] = field(default_factory=dict)


class _Unsatisfiable(ReadError):
    """The server refused the range (``416``: past the end of the file; an empty file
    answers so to any range)."""

    def __init__(self, url: str, start: int, stop: int) -> None:
        super().__init__(
            f"{redact(url)}: the server refused bytes [{start}, {stop}) (HTTP 416: past "
            "the end of the file)"
        )


def _total(content_range: str | None) -> int | None:
    match = _CONTENT_RANGE.match(content_range or "")
    return int(match.group(1)) if match else None


def check_range_read(
    url: str, start: int, stop: int, data: bytes | memoryview, *, size: int | None = None
) -> None:
    """Check that reading ``[start, stop)`` of ``url`` gave exactly that many bytes.

    More bytes than asked for means the server ignored the ``Range`` header and sent
    the whole file (``http.server`` does this): that raises
    [`RangeNotSupportedError`][dicom_dask.errors.RangeNotSupportedError] on the first
    read, rather than downloading the whole file again for every frame. Fewer bytes
    raise [`ReadError`][dicom_dask.errors.ReadError].
    """
    asked, got = stop - start, len(data)
    if got > asked:
        whole = " (the whole file)" if size is not None and got == size else ""
        raise RangeNotSupportedError(
            f"{redact(url)}: the server ignored the Range header: asked for bytes "
            f"[{start}, {stop}) ({asked} bytes), it sent {got} bytes{whole}. dicom_dask "
            "reads by byte range and will not download the whole file for every read: "
            "serve the file with a server that honours Range requests (nginx, S3, GCS, "
            f"...), or read a local copy, e.g. 'simplecache::{redact(url)}' (fsspec "
            "downloads it once)"
        )
    if got < asked:
        raise ReadError(f"{redact(url)}: asked for {asked} bytes at offset {start}, got {got}")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind ``exc``: aiohttp's ``status``, urllib's ``code``, or the
    ``response.status_code`` of requests (dicomweb-client); ``None`` when there is none."""
    for owner, name in (
        (exc, "status"),
        (exc, "code"),
        (getattr(exc, "response", None), "status_code"),
    ):
        status = getattr(owner, name, None)  # one at a time: aiohttp deprecates .code
        if isinstance(status, int) and 100 <= status < 600:
            return status
    return None


def _size(url: str, start: int, stop: int, data: bytes, content_range: str | None) -> int | None:
    """The file's size from ``Content-Range``, having checked the body's length; without
    it (the server sent the file whole, ``200``) the body's length, if the body is no
    longer than was asked."""
    total = _total(content_range)
    if total is not None:
        if len(data) != max(0, min(stop, total) - start):
            check_range_read(url, start, min(stop, total), data, size=total)
        return total
    if start > 0:  # a whole file where a part was asked for, or a short reply
        check_range_read(url, start, stop, data)
        return None
    check_range_read(url, 0, min(len(data), stop), data, size=len(data))
    return len(data)


async def _http(fs: Any, url: str, start: int, stop: int) -> Head:
    kw = dict(fs.kwargs)
    headers = dict(kw.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{stop - 1}"
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **kw) as r:
        if r.status == 404:
            raise FileNotFoundError(url)
        if r.status == 416:
            raise _Unsatisfiable(url, start, stop)
        r.raise_for_status()
        data = await r.read()
        reply = r.headers
    info = {k: reply[k] for k in ("ETag", "Content-MD5", "Digest", "Last-Modified") if reply.get(k)}
    return Head(bytes(data), _size(url, start, stop, data, reply.get("Content-Range")), info)


async def _s3(fs: Any, path: str, start: int, stop: int) -> Head:
    bucket, key, version = fs.split_path(path)
    extra = {"VersionId": version} if version else {}
    try:
        resp = await s3_call(
            fs, "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{stop - 1}", **extra
        )
    except OSError as exc:
        if "InvalidRange" in str(exc) or http_status(exc) == 416:
            raise _Unsatisfiable(path, start, stop) from exc
        raise
    try:
        data = await resp["Body"].read()
    finally:
        resp["Body"].close()
    info = {k: resp[k] for k in ("ETag", "LastModified", "VersionId") if resp.get(k)}
    return Head(bytes(data), _size(path, start, stop, data, resp.get("ContentRange")), info)


async def _gcs(fs: Any, path: str, start: int, stop: int) -> Head:
    try:
        reply, data = await gcs_call(
            fs, "GET", fs.url(path), headers={"Range": f"bytes={start}-{stop - 1}"}
        )
    except OSError as exc:
        if http_status(exc) == 416 or "416" in str(exc):
            raise _Unsatisfiable(path, start, stop) from exc
        raise
    # the media download's ETag is not the object resource's etag that info() reports;
    # the generation is the same number in both
    generation = reply.get("x-goog-generation")
    info = {"generation": generation} if generation else {}
    return Head(bytes(data), _size(path, start, stop, data, reply.get("Content-Range")), info)


def _impl(fs: fsspec.AbstractFileSystem) -> Callable[..., Coroutine[Any, Any, Head]] | None:
    for module, name, impl in (
        ("fsspec.implementations.http", "HTTPFileSystem", _http),
        ("s3fs", "S3FileSystem", _s3),
        ("gcsfs", "GCSFileSystem", _gcs),
    ):
        loaded = sys.modules.get(module)  # a filesystem of that kind implies its module
        if loaded is not None and isinstance(fs, getattr(loaded, name)):
            return impl
    return None


def supports_head(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether [`read_head`][dicom_dask.frames.ranged_get.read_head] can read ``fs``
    in one request (HTTP, S3, GCS)."""
    return _impl(fs) is not None


def read_head(fs: fsspec.AbstractFileSystem, path: str, nbytes: int) -> Head | None:
    """The first ``nbytes`` of ``path`` with the file's size and identity, in one GET.

    Returns ``None`` when ``fs`` has no such request (not HTTP, S3 or GCS) or the server
    refused the range (an empty object): ask ``info()`` then. Raises
    ``FileNotFoundError`` when there is no such file, and what the filesystem raises on
    other failures (retry them with [`call_fs`][dicom_dask.frames.fetch.call_fs]).
    """
    impl = _impl(fs)
    if impl is None or nbytes < 1:
        return None
    try:
        return sync(fs.loop, impl, fs, path, 0, nbytes)
    except _Unsatisfiable:
        return None


def read_heads(
    fs: fsspec.AbstractFileSystem, paths: Sequence[str], nbytes: int, *, concurrency: int
) -> list[Head | BaseException | None]:
    """[`read_head`][dicom_dask.frames.ranged_get.read_head] of every path, at most
    ``concurrency`` requests in flight, in one call on the filesystem's event loop (so the
    requests follow each other without waiting for threads). A path that failed gives its
    exception (retry it alone), one whose range was refused ``None``."""
    if _impl(fs) is None or nbytes < 1:
        return [None] * len(paths)
    got = read_parts(fs, [(p, 0, nbytes) for p in paths], concurrency=concurrency)
    return [None if isinstance(g, _Unsatisfiable) else g for g in got]


def read_parts(
    fs: fsspec.AbstractFileSystem,
    requests: Sequence[tuple[str, int, int]],
    *,
    concurrency: int,
) -> list[Head | BaseException]:
    """Bytes ``[start, stop)`` of ``(path, start, stop)`` requests of an HTTP, S3 or GCS
    filesystem with each reply's size and identity: one GET each, at most
    ``concurrency`` in flight, in one call on the filesystem's event loop. A failed
    request gives its exception (as ``cat_ranges(on_error="return")`` does), a refused
    range (past the end of the file) a ``ReadError`` naming it.
    """
    impl = _impl(fs)
    if impl is None:
        raise TypeError(f"{type(fs).__name__} has no ranged GET with the reply's headers")
    run = impl

    async def gather() -> list[Head | BaseException]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(path: str, start: int, stop: int) -> Head | BaseException:
            async with gate:
                try:
                    return await run(fs, path, start, stop)
                except Exception as exc:  # reported, retried by the caller
                    return exc

        return list(await asyncio.gather(*(one(*r) for r in requests)))

    out: list[Head | BaseException] = sync(fs.loop, gather)
    return out
