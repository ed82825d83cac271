"""Byte-range access to one file over fsspec, with no file handle kept open."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import re
import stat
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from dicom_dask.errors import (
    CredentialsWarning,
    RangeNotSupportedError,
    ReadError,
    SourceNotFoundError,
)

__all__ = [
    "BlockReader",
    "Source",
    "call_fs",
    "canonical_url",
    "check_range_read",
    "cpu_count",
    "credentials_for",
    "fetch_ranges",
    "open_source",
    "redact",
    "resolve_fs",
    "scrub",
    "strip_credentials",
]


@functools.cache
def cpu_count() -> int:
    """``os.cpu_count()``, asked once: each call reads ``/sys`` (tens of µs, more than
    a small read's bookkeeping)."""
    return os.cpu_count() or 1


#: fsspec options for every URL, or a zero-argument factory returning a ready filesystem.
StorageOptions = Mapping[str, Any] | Callable[[], fsspec.AbstractFileSystem] | None


# -- credentials in URLs ----------------------------------------------------------------
#: ``scheme://user:password@`` (or ``scheme://token@``) anywhere in a text.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#@\s]*)@")
#: (scheme, host[:port]) -> (user, password) seen in URLs by this process.
_CREDENTIALS: dict[tuple[str, str], tuple[str, str]] = {}
_CREDENTIALS_LOCK = threading.Lock()


def redact(text: str) -> str:
    """``text`` with the user-info of every URL in it masked: ``http://alice:***@host/``.

    Every message, warning and ``repr`` that shows a URL goes through this helper.
    """
    if "@" not in text:
        return text

    def mask(match: re.Match[str]) -> str:
        user, colon, _ = match["info"].partition(":")
        return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"

    return _USERINFO.sub(mask, text)


def _scheme_host(url: str) -> tuple[str, str] | None:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return scheme.lower().removeprefix("dicomweb+"), host.lower()


def strip_credentials(url: str, *, remember: bool = True) -> str:
    """``url`` without user-info (every link of a chained URL).

    With ``remember`` the credentials are kept in this process, for the host they were
    given with: [`resolve_fs`][dicom_dask.frames._io.resolve_fs] and the DICOMweb client
    send them to that host only. They are never saved, pickled or shown; a
    [`CredentialsWarning`][dicom_dask.errors.CredentialsWarning] says so once per host.
    """
    if "@" not in url:
        return url
    found: list[tuple[str, str, str]] = []

    def strip(match: re.Match[str]) -> str:
        user, _, password = match["info"].partition(":")
        rest = url[match.end() :]
        host = re.split(r"[/?#]", rest, maxsplit=1)[0]
        found.append((match["scheme"][:-3], host, f"{unquote(user)}\0{unquote(password)}"))
        return match["scheme"]

    clean = _USERINFO.sub(strip, url)
    if remember:
        for scheme, host, both in found:
            user, _, password = both.partition("\0")
            key = (scheme.lower().removeprefix("dicomweb+"), host.lower())
            with _CREDENTIALS_LOCK:
                new = _CREDENTIALS.get(key) != (user, password)
                _CREDENTIALS[key] = (user, password)
            if new:
                warnings.warn(
                    f"{redact(url)}: credentials in a URL are used by this process only and "
                    "are stripped from messages, metadata, saved indexes, references and "
                    "pickled graphs (dask workers in other processes do not get them); pass "
                    "them in storage_options (HTTP: client_kwargs={'auth': aiohttp.BasicAuth"
                    "(user, password)}) or a filesystem factory",
                    CredentialsWarning,
                    stacklevel=3,
                )
    return clean


def scrub(exc: BaseException) -> BaseException:
    """Remove the ``Authorization`` header an HTTP library keeps in a failed request's
    exception (aiohttp's ``request_info``, requests' ``request``), along ``exc``'s chain of
    causes, so that logging the error or its ``repr`` shows no credentials. Returns
    ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        info = getattr(current, "request_info", None)
        headers = getattr(info, "headers", None)
        if headers is not None and "Authorization" in headers:
            from multidict import CIMultiDict, CIMultiDictProxy

            kept = CIMultiDict((k, v) for k, v in headers.items() if k.lower() != "authorization")
            replace = getattr(info, "_replace", None)  # aiohttp's RequestInfo: a named tuple
            new = replace(headers=CIMultiDictProxy(kept)) if replace is not None else None
            with contextlib.suppress(AttributeError):
                current.request_info = new  # type: ignore[attr-defined]
        for owner in (current, getattr(current, "response", None)):
            request = getattr(owner, "request", None)
            if request is not None and "Authorization" in (getattr(request, "headers", None) or {}):
                with contextlib.suppress(AttributeError):
                    owner.request = None  # type: ignore[union-attr]
        current = current.__cause__ or current.__context__
    return exc


def credentials_for(url: str) -> tuple[str, str] | None:
    """The (user, password) this process was given for the host of ``url``, if any."""
    key = _scheme_host(url)
    if key is None or not _CREDENTIALS:
        return None
    with _CREDENTIALS_LOCK:
        return _CREDENTIALS.get(key)


def canonical_url(url: str | os.PathLike[str]) -> str:
    """Return ``url`` with local paths made absolute (``file://`` removed) and
    credentials stripped (see [`strip_credentials`][dicom_dask.frames._io.strip_credentials]).

    Chained URLs (``simplecache::s3://...``) and remote URLs are otherwise unchanged.
    """
    text = strip_credentials(os.fspath(url))
    if "::" in text:
        return text
    protocol, _, rest = text.partition("://")
    if not rest:
        return os.path.abspath(os.path.expanduser(text))
    if protocol in ("file", "local"):
        return os.path.abspath(rest)
    return text


def _protocols(fs: fsspec.AbstractFileSystem) -> set[str]:
    protocol = fs.protocol
    names = {protocol} if isinstance(protocol, str) else set(protocol)
    return names | ({"file", "local"} if isinstance(fs, LocalFileSystem) else set())


def resolve_fs(
    url: str, storage_options: StorageOptions = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path of ``url``.

    ``storage_options`` is a mapping of fsspec options, or a *filesystem factory*: a
    picklable zero-argument callable returning a filesystem, called where the read
    happens (on a dask worker, say) so that credentials it looks up there never travel
    in a pickled graph. A factory serves the URLs of its own protocol; other URLs
    (a local index file beside an ``s3://`` slide, say) get fsspec's defaults.
    """
    try:
        if callable(storage_options):
            fs = storage_options()
            if not isinstance(fs, fsspec.AbstractFileSystem):
                raise TypeError(
                    f"the filesystem factory returned {type(fs).__name__}, "
                    "expected an fsspec filesystem"
                )
            protocol = url.split("://")[0] if "://" in url and "::" not in url else "file"
            if protocol in _protocols(fs):
                return fs, fs._strip_protocol(url)
            return url_to_fs(url)
        options = dict(storage_options or {})
        if _CREDENTIALS and "::" not in url:
            url, options = _with_credentials(url, options)
        return url_to_fs(url, **options)
    except (ValueError, ImportError) as exc:
        raise ReadError(f"{redact(url)}: cannot open a filesystem for this URL: {exc}") from exc


class _HostAuth:
    """An aiohttp client middleware adding HTTP basic auth to requests for the hosts this
    process was given credentials for (never to another host: one session serves many)."""

    def __repr__(self) -> str:  # fsspec caches filesystems by the repr of their options
        return "dicom_dask-host-auth"

    async def __call__(self, request: Any, handler: Any) -> Any:
        import aiohttp

        found = credentials_for(str(request.url))
        if found is not None and "Authorization" not in request.headers:
            request.headers["Authorization"] = aiohttp.BasicAuth(*found).encode()
        return await handler(request)


_HOST_AUTH = _HostAuth()


def _with_credentials(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL and options that give the filesystem the credentials of ``url``'s host."""
    protocol = url.split("://")[0].lower() if "://" in url else "file"
    if protocol in ("http", "https"):
        client = dict(options.get("client_kwargs") or {})
        if "auth" not in client:
            client["middlewares"] = (*client.get("middlewares", ()), _HOST_AUTH)
            options["client_kwargs"] = client
        return url, options
    found = credentials_for(url)
    if found is None:
        return url, options
    # ftp, sftp, smb...: fsspec reads them from the URL, into this process's filesystem
    user, password = (quote(v, safe="") for v in found)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{password}@{rest}", options


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
            data = call_fs(self.url, _pread, self.path, start, stop)
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


def _pread(path: str, start: int, stop: int) -> bytes:
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


#: Requests one read keeps in flight on an async filesystem (HTTP, S3, GCS).
CONCURRENCY = 32


def fetch_ranges(
    fs: fsspec.AbstractFileSystem, requests: Sequence[tuple[str, str, int, int]]
) -> list[bytes]:
    """Read ``(url, path, start, stop)`` byte ranges of ``fs`` in one ``cat_ranges`` call.

    Async filesystems send the requests concurrently (at most `CONCURRENCY` in
    flight). Requests that fail transiently are sent again, with the backoff of
    `RETRY`; a permanent failure raises [`ReadError`][dicom_dask.errors.ReadError] naming the URL
    and the byte range, a missing object
    [`SourceNotFoundError`][dicom_dask.errors.SourceNotFoundError].
    """
    out: list[bytes | None] = [None] * len(requests)
    todo = list(range(len(requests)))
    delays = RETRY.delays()
    extra = {"batch_size": CONCURRENCY} if getattr(fs, "async_impl", False) else {}
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


def open_source(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    filesystem: fsspec.AbstractFileSystem | None = None,
) -> Source:
    """Resolve ``url`` to a `Source` (one metadata request for its size)."""
    curl = canonical_url(url)
    if filesystem is not None:
        fs, path = filesystem, filesystem._strip_protocol(curl)
    else:
        fs, path = resolve_fs(curl, storage_options)
    if type(fs) is LocalFileSystem:  # os.stat: fsspec's info() costs more than a header
        st = call_fs(curl, os.stat, path)
        if stat.S_ISDIR(st.st_mode):
            raise ReadError(f"{redact(curl)}: is a directory, expected a DICOM file")
        return Source(fs=fs, path=path, url=curl, size=int(st.st_size), identity=_local_id(st))
    info = call_fs(curl, fs.info, path)
    if info.get("type") == "directory":
        raise ReadError(f"{redact(curl)}: is a directory, expected a DICOM file")
    size = info.get("size")
    target = getattr(fs, "fs", None)  # blockcache:: reports no size; its target does
    if size is None and isinstance(target, fsspec.AbstractFileSystem):
        size = call_fs(curl, target.info, path).get("size")
    if size is None:
        raise ReadError(f"{redact(curl)}: the filesystem does not report the size of this file")
    return Source(fs=fs, path=path, url=curl, size=int(size), identity=file_identity(info))


#: Keys of fsspec's ``info()`` that identify a version of a file, per identity field
#: (HTTP, s3fs, gcsfs, adlfs, local...).
_IDENTITY_KEYS = {
    "etag": ("ETag", "etag", "Etag"),
    "generation": ("generation", "VersionId", "version_id"),
    "mtime": ("mtime", "LastModified", "Last-Modified", "last_modified", "updated"),
}


def file_identity(info: Mapping[str, Any]) -> dict[str, str]:
    """The ``etag`` / ``generation`` / ``mtime`` an fsspec ``info()`` reports, as strings."""
    out = {}
    for name, keys in _IDENTITY_KEYS.items():
        value = next((info[k] for k in keys if info.get(k) not in (None, "")), None)
        if value is not None:
            out[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return out


def _local_id(st: os.stat_result) -> dict[str, str]:
    return {"mtime": str(st.st_mtime)}  # what LocalFileSystem.info() reports


class BlockReader(io.RawIOBase):
    """A read-only, seekable file over a `Source` that fetches growing blocks.

    It keeps one contiguous prefix of the file in memory, extended by requests that
    double in size, so that a header of any length costs few requests and the
    bytes after it (offset tables, first fragments) are often already there.
    """

    def __init__(self, source: Source, *, first_block: int = 65536) -> None:
        super().__init__()
        self.source = source
        self.first_block = int(first_block)
        self._buffer = bytearray()
        self._pos = 0
        #: Number of requests this reader has sent.
        self.requests = 0

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
