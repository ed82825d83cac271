"""Bytes of byte ranges, with retries: the one place a read meets the filesystem.

[`fetch_ranges`][dicom_dask.frames.fetch.fetch_ranges] reads many ranges in one
``cat_ranges`` call, [`call_fs`][dicom_dask.frames.fetch.call_fs] wraps any other
filesystem call; both retry transient failures with [`RETRY`][dicom_dask.frames.fetch.RETRY]
and raise errors that name the URL and the byte range.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

from dicom_dask.config import io_concurrency
from dicom_dask.errors import RangeNotSupportedError, ReadError, SourceNotFoundError
from dicom_dask.frames.storage import redact, scrub

__all__ = [
    "RETRY",
    "RetryPolicy",
    "call_fs",
    "check_range_read",
    "describe_error",
    "fetch_ranges",
    "http_status",
    "is_transient",
    "pread",
]


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


def pread(path: str, start: int, stop: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, stop - start, start)
    finally:
        os.close(fd)


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


def fetch_ranges(
    fs: fsspec.AbstractFileSystem, requests: Sequence[tuple[str, str, int, int]]
) -> list[bytes]:
    """Read ``(url, path, start, stop)`` byte ranges of ``fs`` in one ``cat_ranges`` call.

    Async filesystems send the requests concurrently (at most
    [`io_concurrency`][dicom_dask.config.io_concurrency] in flight).
    Requests that fail transiently are sent again, with the backoff of
    `RETRY`; a permanent failure raises [`ReadError`][dicom_dask.errors.ReadError] naming the URL
    and the byte range, a missing object
    [`SourceNotFoundError`][dicom_dask.errors.SourceNotFoundError].
    """
    out: list[bytes | None] = [None] * len(requests)
    todo = list(range(len(requests)))
    delays = RETRY.delays()
    extra = {"batch_size": io_concurrency()} if getattr(fs, "async_impl", False) else {}
    for attempt in range(len(delays) + 1):
        try:
            got = fs.cat_ranges(
                [requests[i][1] for i in todo],
                [requests[i][2] for i in todo],
                [requests[i][3] for i in todo],
                on_error="return",
                **extra,
            )
        except Exception as exc:  # the whole call failed: every range failed with it
            got = [exc] * len(todo)
        failed = []
        for i, data in zip(todo, got, strict=True):
            url, _, start, stop = requests[i]
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
                error.request = i  # type: ignore[attr-defined]
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
        except ReadError:
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
