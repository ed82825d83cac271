"""One ranged GET of a file's first bytes that also tells the file's size and version.

fsspec's public ``cat_file`` returns the bytes only, so opening a remote file has cost a
metadata request (``info()``: a HEAD) for its size and ETag before the ranged GET of its
header. The reply to the ranged GET carries both already: ``Content-Range: bytes
0-16383/524288`` gives the size, ``ETag`` / ``Last-Modified`` / ``x-goog-generation`` the
version. [`read_head`][dicom_dask.frames.ranged_get.read_head] sends that one GET over
HTTP (fsspec's aiohttp session), S3 (s3fs) and GCS (gcsfs) and reports what it learnt in
the keys those filesystems' ``info()`` use, so that
[`file_identity`][dicom_dask.frames.source.file_identity] records the same identity as a
HEAD would.

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
from dicom_dask.frames.fetch import check_range_read, http_status

__all__ = ["Head", "read_head", "read_heads", "supports_head"]

_CONTENT_RANGE = re.compile(r"bytes\s+(?:\d+-\d+|\*)/(\d+)")


@dataclass(frozen=True)
class Head:
    """The first bytes of a file and what the reply said about the whole file."""

    #: ``[0, min(nbytes, size))`` of the file.
    data: bytes
    #: The size of the file in bytes.
    size: int
    #: What identifies this version, in the keys the filesystem's ``info()`` uses
    #: (``ETag``, ``Last-Modified``, ``LastModified``, ``VersionId``, ``generation``).
    info: Mapping[str, Any] = field(default_factory=dict)


class _Unsatisfiable(Exception):
    """The server refused the range (an empty file answers 416)."""


def _total(content_range: str | None) -> int | None:
    match = _CONTENT_RANGE.match(content_range or "")
    return int(match.group(1)) if match else None


def _size(url: str, nbytes: int, data: bytes, content_range: str | None) -> int:
    """The file's size from ``Content-Range``; without it (the server sent the file
    whole, ``200``) the body's length, if the body is no longer than was asked."""
    total = _total(content_range)
    if total is not None:
        if len(data) != min(nbytes, total):
            check_range_read(url, 0, min(nbytes, total), data, size=total)
        return total
    check_range_read(url, 0, min(len(data), nbytes), data, size=len(data))
    return len(data)


async def _http(fs: Any, url: str, nbytes: int) -> Head:
    kw = dict(fs.kwargs)
    headers = dict(kw.pop("headers", None) or {})
    headers["Range"] = f"bytes=0-{nbytes - 1}"
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **kw) as r:
        if r.status == 404:
            raise FileNotFoundError(url)
        if r.status == 416:
            raise _Unsatisfiable(url)
        r.raise_for_status()
        data = await r.read()
        reply = r.headers
    info = {k: reply[k] for k in ("ETag", "Content-MD5", "Digest", "Last-Modified") if reply.get(k)}
    return Head(bytes(data), _size(url, nbytes, data, reply.get("Content-Range")), info)


async def _s3(fs: Any, path: str, nbytes: int) -> Head:
    bucket, key, version = fs.split_path(path)
    extra = {"VersionId": version} if version else {}
    try:
        resp = await s3_call(
            fs, "get_object", Bucket=bucket, Key=key, Range=f"bytes=0-{nbytes - 1}", **extra
        )
    except OSError as exc:
        if "InvalidRange" in str(exc) or http_status(exc) == 416:
            raise _Unsatisfiable(path) from exc
        raise
    try:
        data = await resp["Body"].read()
    finally:
        resp["Body"].close()
    info = {k: resp[k] for k in ("ETag", "LastModified", "VersionId") if resp.get(k)}
    return Head(bytes(data), _size(path, nbytes, data, resp.get("ContentRange")), info)


async def _gcs(fs: Any, path: str, nbytes: int) -> Head:
    try:
        reply, data = await gcs_call(
            fs, "GET", fs.url(path), headers={"Range": f"bytes=0-{nbytes - 1}"}
        )
    except OSError as exc:
        if http_status(exc) == 416 or "416" in str(exc):
            raise _Unsatisfiable(path) from exc
        raise
    # the media download's ETag is not the object resource's etag that info() reports;
    # the generation is the same number in both
    generation = reply.get("x-goog-generation")
    info = {"generation": generation} if generation else {}
    return Head(bytes(data), _size(path, nbytes, data, reply.get("Content-Range")), info)


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
        return sync(fs.loop, impl, fs, path, nbytes)
    except _Unsatisfiable:
        return None


def read_heads(
    fs: fsspec.AbstractFileSystem, paths: Sequence[str], nbytes: int, *, concurrency: int
) -> list[Head | BaseException | None]:
    """[`read_head`][dicom_dask.frames.ranged_get.read_head] of every path, at most
    ``concurrency`` requests in flight, in one call on the filesystem's event loop (so the
    requests follow each other without waiting for threads). A path that failed gives its
    exception (retry it alone), one whose range was refused ``None``."""
    impl = _impl(fs)
    if impl is None or nbytes < 1:
        return [None] * len(paths)
    run = impl

    async def gather() -> list[Head | BaseException | None]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(path: str) -> Head | BaseException | None:
            async with gate:
                try:
                    return await run(fs, path, nbytes)
                except _Unsatisfiable:
                    return None
                except Exception as exc:  # reported, retried by the caller
                    return exc

        return list(await asyncio.gather(*(one(p) for p in paths)))

    out: list[Head | BaseException | None] = sync(fs.loop, gather)
    return out
