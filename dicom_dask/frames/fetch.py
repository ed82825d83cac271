"""Bytes of byte ranges, with retries: the one place a read meets the filesystem.

[`fetch_spans`][dicom_dask.frames.fetch.fetch_spans] turns ``(url, start, stop)`` spans
into bytes: local files with ``os.pread``, every other filesystem as merged requests
([`merge_ranges`][dicom_dask.frames.fetch.merge_ranges] under a
[`MergePolicy`][dicom_dask.frames.fetch.MergePolicy], the one merge rule) in one
concurrent [`fetch_ranges`][dicom_dask.frames.fetch.fetch_ranges] call per filesystem.
The store and the direct reader of the ``chunks`` stage turn chunk references into
spans and read them here
([`DicomStore.fetch_refs`][dicom_dask.chunks.store.DicomStore.fetch_refs]).
[`call_fs`][dicom_dask.frames.fetch.call_fs] wraps any other filesystem call; both retry
transient failures with `RETRY` (a [`RetryPolicy`][dicom_dask.frames.fetch.RetryPolicy]) and
raise errors that name the URL and the byte range.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

from dicom_dask.config import io_concurrency
from dicom_dask.errors import DicomDaskError, ReadError, SourceNotFoundError, StaleIndexError
from dicom_dask.frames.ranged_get import (
    Head,
    _Unsatisfiable,
    check_range_read,
    http_status,
    read_parts,
    supports_head,
)
from dicom_dask.frames.storage import redact, resolve_fs, scrub
from dicom_dask.frames.version import FileVersion, check_version, file_identity, local_identity

__all__ = [
    "MERGE",
    "RETRY",
    "MergePolicy",
    "RetryPolicy",
    "call_fs",
    "check_descriptor",
    "check_range_read",
    "describe_error",
    "fetch_ranges",
    "fetch_spans",
    "held_by",
    "http_status",
    "is_transient",
    "merge_ranges",
    "pread",
    "pread_ranges",
    "read_ranges",
]

#: A byte range of a file: ``(url, start, stop)``.
Span = tuple[str, int, int]
#: Where a URL's bytes are: its filesystem and the path on it.
Resolver = Callable[[str], tuple[fsspec.AbstractFileSystem, str]]


#: The version of each file an index recorded, by URL (see
#: [`FileVersion`][dicom_dask.frames.version.FileVersion]).
Versions = Mapping[str, FileVersion]


def check_descriptor(fd: int, url: str, version: FileVersion | None, start: int, stop: int) -> None:
    """Raise [`StaleIndexError`][dicom_dask.errors.StaleIndexError] when the local file
    open as ``fd`` is not ``version`` (its size and modification time, ``fstat``), about
    to be read at ``[start, stop)``; nothing without a version."""
    if version is not None:
        st = os.fstat(fd)
        where = f"reading bytes [{start}, {stop})"
        check_version(url, version, size=st.st_size, identity=local_identity(st), where=where)


def pread(
    path: str, start: int, stop: int, *, version: FileVersion | None = None, label: str = ""
) -> bytes:
    """Bytes ``[start, stop)`` of the local file ``path`` (``os.pread``, no file object).

    With ``version``, the descriptor read through is first checked to be that version of
    the file (size and modification time, ``fstat``): else
    [`StaleIndexError`][dicom_dask.errors.StaleIndexError] naming ``label`` (the URL)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        check_descriptor(fd, label or path, version, start, stop)
        return os.pread(fd, stop - start, start)
    finally:
        os.close(fd)


def pread_ranges(
    path: str,
    ranges: Sequence[tuple[int, int]],
    *,
    version: FileVersion | None = None,
    label: str = "",
) -> list[bytes]:
    """Bytes of ``(start, stop)`` ranges of the local file ``path``, through one
    descriptor (checked against ``version`` as [`pread`][dicom_dask.frames.fetch.pread]
    does)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if ranges:
            check_descriptor(fd, label or path, version, ranges[0][0], ranges[-1][1])
        return [os.pread(fd, stop - start, start) for start, stop in ranges]
    finally:
        os.close(fd)


def _pread_all(
    path: str, ranges: Sequence[tuple[int, int]], version: FileVersion | None, url: str
) -> list[bytes]:
    try:
        return pread_ranges(path, ranges, version=version, label=url)
    except StaleIndexError as exc:
        exc.requests = [0]  # type: ignore[attr-defined]
        raise


@dataclass(frozen=True)
class MergePolicy:
    """When neighbouring byte ranges of one file are read in one request.

    Two ranges (sorted by start) go in one request when the gap between them is at most
    ``gap`` bytes, the request stays within ``limit`` bytes, and at most ``waste`` of it
    is bytes nobody asked for. Neighbouring tiles of a row, or slices of a series file,
    become one request; the tile rows of a narrow region stay separate requests.

    Attributes
    ----------
    gap : int
        Largest gap (bytes) between two ranges read in one request.
    limit : int
        Largest request (bytes).
    waste : float
        Largest share of a request that may be unrequested bytes (``1.0``: no limit).
    """

    gap: int = 64 * 1024
    limit: int = 16 * 2**20
    waste: float = 0.1


#: The policy of every read of chunks (the dask reader and the zarr store alike).
MERGE = MergePolicy()


def merge_ranges(
    ranges: Sequence[tuple[int, int]], *, policy: MergePolicy = MERGE
) -> list[tuple[int, int, list[int]]]:
    """Merge ``(start, stop)`` byte ranges of one file into requests, under ``policy``.

    Returns ``(start, stop, members)`` per request, in file order, ``members`` indexing
    ``ranges`` (overlapping and repeated ranges share a request).
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    spans: list[tuple[int, int, list[int]]] = []
    useful: list[int] = []
    for i in order:
        start, stop = ranges[i]
        if spans:
            s0, s1, members = spans[-1]
            new_stop = max(stop, s1)
            wanted = useful[-1] + (stop - start)
            if (
                start - s1 <= policy.gap
                and new_stop - s0 <= policy.limit
                and (new_stop - s0) - wanted <= policy.waste * (new_stop - s0)
            ):
                spans[-1] = (s0, new_stop, [*members, i])
                useful[-1] = wanted
                continue
        spans.append((start, stop, [i]))
        useful.append(stop - start)
    return spans


@dataclass(frozen=True)
class RetryPolicy:
    """How transient read failures are retried: exponential backoff, bounded.

    Transient: timeouts, connection resets/refusals, HTTP 5xx and 429 (anything with
    a ``status`` or ``code`` attribute in that range). Everything else fails at once.
    """

    attempts: int = 5
    first_delay: float = 0.05
    max_delay: float = 2.0
    budget: float = 20.0

    def delays(self) -> list[float]:
        """The waits before each retry, within the total budget."""
        return list(_delays(self))


@functools.cache
def _delays(policy: RetryPolicy) -> tuple[float, ...]:
    """`RetryPolicy.delays`, computed once per policy (every read asks for them)."""
    out, total = [], 0.0
    for k in range(policy.attempts - 1):
        delay = min(policy.first_delay * 2**k, policy.max_delay)
        if total + delay > policy.budget:
            break
        out.append(delay)
        total += delay
    return tuple(out)


#: The policy every read uses (replace it to tune retries process-wide).
RETRY = RetryPolicy()
_TRANSIENT_ERRNO = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ETIMEDOUT,
    errno.EPIPE,
    errno.ECONNABORTED,
    errno.EAGAIN,
}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying (network hiccup, server overload)."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO:
        return True
    status = http_status(exc)
    if status is not None and (500 <= status < 600 or status == 429):
        return True
    name = type(exc).__name__
    return name in {"ServerDisconnectedError", "ClientConnectionError", "ClientOSError"}


def describe_error(exc: BaseException) -> str:
    """A short description of a read failure (``HTTP 403 Forbidden``, not a page of repr)."""
    cause = exc.__cause__
    if http_status(exc) is None and cause is not None and http_status(cause) is not None:
        exc = cause  # fsspec's HTTP info() wraps the failed request in FileNotFoundError
    status = http_status(exc)
    if status is not None:
        response = getattr(exc, "response", None)
        reason = getattr(exc, "message", "") or getattr(response, "reason", "") or ""
        return f"HTTP {status} {reason}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    # fsspec's HTTP info() reports any failure of its HEAD and GET as FileNotFoundError
    if isinstance(exc, FileNotFoundError) and exc.__cause__ is not None:
        return is_transient(exc.__cause__)
    return is_transient(exc)


def _not_found(exc: BaseException) -> bool:
    if http_status(exc) == 404:
        return True
    if exc.__cause__ is not None and http_status(exc.__cause__) in (401, 403):
        return False  # fsspec's HTTP info() reports a refusal as FileNotFoundError
    return isinstance(exc, FileNotFoundError) and not _retryable(exc)


def _send(
    fs: fsspec.AbstractFileSystem,
    requests: Sequence[tuple[str, str, int, int]],
    versions: Versions | None,
) -> list[Any]:
    """One concurrent call for ``requests``: bytes, or the exception of each failed one.

    With ``versions``, over HTTP, S3 and GCS, each reply's size and identity are checked
    against the version recorded for its URL (one GET each, as ``cat_ranges`` sends):
    a mismatch gives a [`StaleIndexError`][dicom_dask.errors.StaleIndexError]."""
    if versions and supports_head(fs) and any(r[0] in versions for r in requests):
        parts = [(path, start, stop) for _, path, start, stop in requests]
        heads = read_parts(fs, parts, concurrency=io_concurrency())
        return [_checked(r, h, versions.get(r[0])) for r, h in zip(requests, heads, strict=True)]
    extra = {"batch_size": io_concurrency()} if getattr(fs, "async_impl", False) else {}
    try:
        return list(
            fs.cat_ranges(
                [r[1] for r in requests],
                [r[2] for r in requests],
                [r[3] for r in requests],
                on_error="return",
                **extra,
            )
        )
    except Exception as exc:  # the whole call failed: every range failed with it
        return [exc] * len(requests)


def _checked(
    request: tuple[str, str, int, int], got: Head | BaseException, version: FileVersion | None
) -> bytes | BaseException:
    url, _, start, stop = request
    where = f"reading bytes [{start}, {stop})"
    if isinstance(got, _Unsatisfiable) and version is not None:
        return StaleIndexError(
            f"{redact(url)}: the file changed since it was indexed, found {where}: the "
            f"server says they lie past its end (the index says {version.size} bytes); "
            "open or catalog it again"
        )
    if isinstance(got, BaseException):
        return got
    try:
        check_version(url, version, size=got.size, identity=file_identity(got.info), where=where)
    except StaleIndexError as exc:
        return exc
    return got.data


def fetch_ranges(
    fs: fsspec.AbstractFileSystem,
    requests: Sequence[tuple[str, str, int, int]],
    *,
    versions: Versions | None = None,
) -> list[bytes]:
    """Read ``(url, path, start, stop)`` byte ranges of ``fs`` in one concurrent call.

    Async filesystems send the requests concurrently (at most
    [`io_concurrency`][dicom_dask.config.io_concurrency] in flight).
    Requests that fail transiently are sent again, with the backoff of
    `RETRY`; a permanent failure raises [`ReadError`][dicom_dask.errors.ReadError] naming the URL
    and the byte range, a missing object
    [`SourceNotFoundError`][dicom_dask.errors.SourceNotFoundError]. With ``versions`` (the
    version an index recorded of each URL), HTTP, S3 and GCS replies are checked to come
    from that version (their ``Content-Range`` size and ETag / generation, at no extra
    request): else [`StaleIndexError`][dicom_dask.errors.StaleIndexError].
    """
    out: list[bytes | None] = [None] * len(requests)
    todo = list(range(len(requests)))
    delays = RETRY.delays()
    for attempt in range(len(delays) + 1):
        got = _send(fs, [requests[i] for i in todo], versions)
        failed = []
        for i, data in zip(todo, got, strict=True):
            url, _, start, stop = requests[i]
            if isinstance(data, DicomDaskError):  # ours: it names the URL and the range
                data.requests = [i]  # type: ignore[attr-defined]
                raise data
            if isinstance(data, BaseException):
                if _retryable(data) and attempt < len(delays):
                    failed.append(i)
                    continue
                scrub(data)
                if _not_found(data):
                    raise SourceNotFoundError(f"{redact(url)}: no such file or object") from data
                tries = f" after {attempt + 1} attempts" if attempt else ""
                error = ReadError(
                    f"{redact(url)}: reading bytes [{start}, {stop}) failed{tries}: "
                    f"{describe_error(data)}"
                )
                error.requests = [i]  # type: ignore[attr-defined]
                raise error from data
            check_range_read(url, start, stop, data)
            out[i] = bytes(data)
        if not failed:
            return [b if b is not None else b"" for b in out]
        todo = failed
        time.sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


def call_fs(url: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call an fsspec method, retrying transient failures (`RETRY`), and turn
    its failures into errors that name ``url``."""
    delays = RETRY.delays()
    for attempt in range(len(delays) + 1):
        try:
            return func(*args, **kwargs)
        except (ReadError, StaleIndexError):
            raise
        except Exception as exc:
            scrub(exc)
            if _not_found(exc):
                raise SourceNotFoundError(f"{redact(url)}: no such file or object") from exc
            if _retryable(exc) and attempt < len(delays):
                time.sleep(delays[attempt])
                continue
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise ReadError(f"{redact(url)}: read failed{tries}: {describe_error(exc)}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def held_by(groups: Sequence[Sequence[int]]) -> Iterator[None]:
    """Within the block, a failed read's ``requests`` (the indices of the failed requests
    in the list the block sent) become the caller's: request ``k`` held the caller's
    items ``groups[k]``. Every layer that regroups reads (merging, per filesystem, per
    chunk) maps failures back this way, so that the caller learns which of its items
    failed."""
    try:
        yield
    except (ReadError, StaleIndexError) as exc:
        held = getattr(exc, "requests", None)
        if held is not None:
            exc.requests = [m for k in held for m in groups[k]]  # type: ignore[union-attr]
        raise


def read_ranges(
    fs: fsspec.AbstractFileSystem,
    requests: Sequence[tuple[str, str, int, int]],
    *,
    policy: MergePolicy = MERGE,
    versions: Versions | None = None,
) -> list[bytes]:
    """Bytes of ``(url, path, start, stop)`` ranges of ``fs``: the ranges of each URL
    merged under ``policy`` ([`merge_ranges`][dicom_dask.frames.fetch.merge_ranges]), every
    merged request in one [`fetch_ranges`][dicom_dask.frames.fetch.fetch_ranges] call, each
    range cut back out of its request.

    A failed request raises [`ReadError`][dicom_dask.errors.ReadError] (a file that is
    no longer the version in ``versions``,
    [`StaleIndexError`][dicom_dask.errors.StaleIndexError]) whose ``requests`` attribute
    lists the indices (into ``requests``) of the ranges it held.
    """
    by_url: dict[str, list[int]] = {}
    for i, (url, *_) in enumerate(requests):
        by_url.setdefault(url, []).append(i)
    merged: list[tuple[str, str, int, int]] = []
    members: list[list[int]] = []
    for url, indices in by_url.items():
        path = requests[indices[0]][1]
        ranges = [requests[i][2:] for i in indices]
        for start, stop, group in merge_ranges(ranges, policy=policy):
            merged.append((url, path, start, stop))
            members.append([indices[m] for m in group])
    with held_by(members):
        blobs = fetch_ranges(fs, merged, versions=versions) if merged else []
    out: list[bytes] = [b""] * len(requests)
    for (_, _, start, _), group, blob in zip(merged, members, blobs, strict=True):
        view = memoryview(blob)
        for i in group:
            a, b = requests[i][2], requests[i][3]
            out[i] = (
                blob if (a, b) == (start, start + len(blob)) else bytes(view[a - start : b - start])
            )
    return out


def fetch_spans(
    spans: Sequence[Span],
    *,
    filesystem: Resolver | None = None,
    policy: MergePolicy = MERGE,
    versions: Versions | None = None,
) -> list[bytes]:
    """Bytes of ``(url, start, stop)`` spans, wherever the URLs are.

    Spans of local files are read with ``os.pread`` (one descriptor per file); those of
    every other filesystem as merged requests
    ([`read_ranges`][dicom_dask.frames.fetch.read_ranges]), one concurrent call per
    filesystem, the URLs of one filesystem together.

    Parameters
    ----------
    spans : sequence of (str, int, int)
        ``(url, start, stop)`` per span.
    filesystem : callable, optional
        ``url -> (filesystem, path)``, e.g. a store's cached
        [`filesystem`][dicom_dask.chunks.store.DicomStore.filesystem];
        [`resolve_fs`][dicom_dask.frames.storage.resolve_fs] by default.
    policy : MergePolicy
        When neighbouring spans of a URL are read in one request.
    versions : mapping of str to FileVersion, optional
        The version an index recorded of each URL: the bytes are checked to come from it
        (the size and identity each reply carries, or the local file's ``fstat``), at no
        extra request.

    Returns
    -------
    list of bytes
        One per span. A failed request raises
        [`ReadError`][dicom_dask.errors.ReadError] naming the URL and byte range, a file
        that changed since it was indexed
        [`StaleIndexError`][dicom_dask.errors.StaleIndexError]; either has ``requests``
        listing the indices of the spans it held.
    """
    from fsspec.implementations.local import LocalFileSystem

    resolve = filesystem or resolve_fs
    out: list[bytes] = [b""] * len(spans)
    by_url: dict[str, list[int]] = {}
    for i, span in enumerate(spans):
        by_url.setdefault(span[0], []).append(i)
    remote: dict[int, tuple[Any, list[tuple[str, str, int, int]], list[int]]] = {}
    for url, indices in by_url.items():
        fs, path = resolve(url)
        if type(fs) is LocalFileSystem:
            ranges = [spans[i][1:] for i in indices]
            version = (versions or {}).get(url)
            with held_by([indices] * len(ranges)):  # one descriptor: a failure is all of them
                blobs = call_fs(url, _pread_all, path, ranges, version, url)
            for i, blob in zip(indices, blobs, strict=True):
                out[i] = blob
            continue
        _, requests, owners = remote.setdefault(id(fs), (fs, [], []))
        requests.extend((url, path, spans[i][1], spans[i][2]) for i in indices)
        owners.extend(indices)
    for fs, requests, owners in remote.values():
        with held_by([[o] for o in owners]):
            blobs = read_ranges(fs, requests, policy=policy, versions=versions)
        for i, blob in zip(owners, blobs, strict=True):
            out[i] = blob
    return out
