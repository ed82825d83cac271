"""Where a URL's bytes live: credentials in URLs, canonical URLs and the fsspec filesystem.

Every message that shows a URL passes it through [`redact`][dicom_dask.frames.storage.redact];
[`resolve_fs`][dicom_dask.frames.storage.resolve_fs] turns a URL and its
[`StorageOptions`][dicom_dask.types.StorageOptions] into a filesystem and a path.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from typing import Any
from urllib.parse import quote, unquote

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from dicom_dask.compat import strip_protocol
from dicom_dask.config import io_concurrency
from dicom_dask.errors import CredentialsWarning, ReadError
from dicom_dask.types import StorageOptions

__all__ = [
    "canonical_url",
    "credentials_for",
    "redact",
    "resolve_fs",
    "scrub",
    "strip_credentials",
]


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
    given with: [`resolve_fs`][dicom_dask.frames.storage.resolve_fs] and the DICOMweb client
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
    credentials stripped (see [`strip_credentials`][dicom_dask.frames.storage.strip_credentials]).

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
                return fs, strip_protocol(fs, url)
            return url_to_fs(url)
        options = dict(storage_options or {})
        if "::" not in url:
            options = _pool_options(url, options)
        if _CREDENTIALS and "::" not in url:
            url, options = _with_credentials(url, options)
        return url_to_fs(url, **options)
    except (ValueError, ImportError) as exc:
        raise ReadError(f"{redact(url)}: cannot open a filesystem for this URL: {exc}") from exc


def _pool_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with S3's connection pool sized to
    [`io_concurrency`][dicom_dask.config.io_concurrency] (botocore keeps 10 connections
    by default, so that 32 or 128 requests "in flight" would queue ten at a time),
    unless the caller chose a size."""
    protocol = url.split("://")[0].lower() if "://" in url else "file"
    if protocol not in ("s3", "s3a"):
        return options
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("max_pool_connections", io_concurrency())
    return {**options, "config_kwargs": config}


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
