"""Many files at once: expand a folder, glob or list into URLs and index them concurrently."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fsspec.implementations.local import LocalFileSystem

from dicom_dask.config import io_concurrency
from dicom_dask.errors import NoImagesError, NoPixelDataError, NotDicomError
from dicom_dask.frames import BlockReader, FrameIndex, canonical_url, index_frames, open_readers
from dicom_dask.frames.fetch import call_fs
from dicom_dask.frames.storage import resolve_fs
from dicom_dask.types import StorageOptions

__all__ = [
    "Listing",
    "classify",
    "classify_source",
    "expand_sources",
    "index_many",
    "is_collection",
    "list_sources",
]

T = TypeVar("T")
_GLOB = set("*?[")


def _probe(fs: Any, path: str, url: str) -> tuple[bool, Mapping[str, Any] | None]:
    """Whether ``path`` is a folder, and the file's ``info()`` when that told it."""
    # HTTP has no folders: isdir() GETs the whole URL to look for links in it, which
    # for a file means downloading it. A listing page is asked for with a trailing "/".
    if {"http", "https"} & set(fs.protocol if isinstance(fs.protocol, tuple) else [fs.protocol]):
        return path.endswith("/"), None
    if url.endswith("/") and _is_remote(fs):
        # an object store's isdir() costs a HEAD and a listing; the listing that
        # follows tells as much (it is empty when there is no such folder)
        return True, None
    if path.endswith("/"):
        return bool(call_fs(url, fs.isdir, path)), None
    try:  # one request (HEAD on object stores) for the usual case, a file (retried)
        info = call_fs(url, fs.info, path)
    except FileNotFoundError:
        return False, None
    return info.get("type") == "directory", info


def _is_remote(fs: Any) -> bool:
    return not isinstance(fs, LocalFileSystem) and "::" not in str(fs.protocol)


@dataclass(frozen=True)
class Listing:
    """The files behind a source (see [`list_sources`][dicom_dask.images.sources.list_sources])."""

    #: The files' URLs, sorted within each folder or glob.
    urls: list[str]
    #: Whether the files were discovered (in folders, by globs) rather than named.
    discovered: bool
    #: What the listing (or a named file's ``info()``) reported for each URL: fsspec's
    #: entry with the ``size`` and ETag... that [`index_many`][dicom_dask.images.sources.index_many]
    #: passes on, so that no request asks for them again.
    infos: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def expand_sources(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    storage_options: StorageOptions = None,
) -> tuple[list[str], bool]:
    """The file URLs behind ``source``, sorted, and whether they were discovered.

    ``source`` is one file, a folder (searched recursively), a glob pattern, or a
    list of those. Discovered files (from folders and globs) that turn out not to be
    DICOM images are skipped by `index_many`; named files are not.
    """
    listing = list_sources(source, storage_options=storage_options)
    return listing.urls, listing.discovered


def list_sources(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    storage_options: StorageOptions = None,
) -> Listing:
    """[`expand_sources`][dicom_dask.images.sources.expand_sources], keeping what the
    listing reported for every file (its size and identity), so that opening the files
    costs one request each (the header's), not two.

    In a list of several sources, a remote one (S3, GCS, HTTP...) is a folder when it
    ends with ``/`` and a file otherwise, without a request to ask which.
    """
    if isinstance(source, str | os.PathLike):
        items = [os.fspath(source)]
    else:
        items = [os.fspath(s) for s in source]
    if not items:
        raise NoImagesError("no file given: the list of sources is empty")
    urls: list[str] = []
    infos: dict[str, Mapping[str, Any]] = {}
    discovered = False
    for item in items:
        url = canonical_url(item)
        fs, path = resolve_fs(url, storage_options)
        protocol = url.split("://")[0] + "://" if "://" in url else ""
        if _GLOB & set(path):
            found = dict(sorted(call_fs(url, fs.glob, path, detail=True).items()))
            discovered = True
        elif len(items) > 1 and _is_remote(fs) and not url.endswith("/"):
            urls.append(url)  # a named object: its header's GET tells its size, no HEAD
            continue
        else:
            folder, info = _probe(fs, path, url)  # listings are retried like reads
            if not folder:
                urls.append(url)
                if info is not None:
                    infos[url] = info
                continue
            found = {
                p: i
                for p, i in sorted(call_fs(url, fs.find, path, detail=True).items())
                if not os.path.basename(p).startswith(".") and i.get("type") != "directory"
            }
            discovered = True
        if not found:
            raise NoImagesError(f"{url}: matches no file")
        # most filesystems list bare paths; HTTP lists full URLs
        for p, info in found.items():
            full = protocol + p if protocol and "::" not in url and "://" not in p else p
            urls.append(full)
            infos[full] = info
    return Listing(urls, discovered, infos)


def _map(func: Callable[[str], T], urls: Sequence[str], threads: int) -> list[T]:
    if len(urls) == 1 or threads <= 1:
        return [func(u) for u in urls]
    with ThreadPoolExecutor(min(threads, len(urls))) as pool:
        return list(pool.map(func, urls))


def index_many(
    urls: Sequence[str],
    *,
    storage_options: StorageOptions = None,
    skip_non_images: bool = False,
    threads: int | None = None,
    first_block: int = 65536,
    infos: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[FrameIndex]:
    """Index every file of ``urls`` concurrently (headers and frame ranges only).

    With ``skip_non_images``, files that are not DICOM or have no pixel data
    (DICOMDIR, structured reports, stray files in a folder) are left out. ``infos``
    (what a listing reported, by URL: [`Listing.infos`][dicom_dask.images.sources.Listing])
    spares the request for each file's size; without it, over HTTP, S3 and GCS, the
    header's first request tells the size too: one request per small file either way.
    Remote files are read by ``threads`` threads (default
    [`io_concurrency`][dicom_dask.config.io_concurrency]), so a series of N files opens
    in about N / ``threads`` latencies.
    """

    # one filesystem for all the URLs of a protocol (building one per file costs more
    # than reading a small header)
    filesystems: dict[str, Any] = {}
    for url in urls:
        protocol = url.split("://")[0] if "://" in url else "file"
        if "::" not in url and protocol not in filesystems:
            filesystems[protocol] = resolve_fs(url, storage_options)[0]

    def one(url: str, reader: BlockReader | None) -> FrameIndex | None:
        protocol = url.split("://")[0] if "://" in url else "file"
        try:
            return index_frames(
                url,
                storage_options=storage_options,
                filesystem=filesystems.get(protocol) if "::" not in url else None,
                first_block=first_block,
                info=(infos or {}).get(url),
                reader=reader,
            )
        except (NotDicomError, NoPixelDataError):
            if skip_non_images:
                return None
            raise

    # local files are parsed faster in one thread (pydicom holds the GIL); remote ones
    # wait on the network, concurrently
    if all("://" not in u or u.startswith("file://") for u in urls):
        threads = 1
    elif threads is None:
        threads = io_concurrency()
    out: list[FrameIndex | None] = []
    for start in range(0, len(urls), _BATCH):  # first blocks in one wave, then parse
        batch = urls[start : start + _BATCH]
        readers = _first_blocks(batch, filesystems, first_block) if threads > 1 else {}
        out += _map(functools.partial(_with_reader, one, readers), batch, threads)
    return [ix for ix in out if ix is not None]


def _with_reader(
    one: Callable[[str, BlockReader | None], T], readers: dict[str, BlockReader], url: str
) -> T:
    return one(url, readers.pop(url, None))  # a URL listed twice is opened again


#: Files whose first blocks are fetched together before their headers are parsed.
_BATCH = 1024


def _first_blocks(
    urls: Sequence[str], filesystems: Mapping[str, Any], first_block: int
) -> dict[str, BlockReader]:
    """The files of ``urls`` opened with their first block read, in one batch of ranged
    GETs per filesystem (HTTP, S3, GCS; none for others)."""
    out: dict[str, BlockReader] = {}
    for protocol, fs in filesystems.items():
        mine = [
            u
            for u in dict.fromkeys(urls)
            if "::" not in u and (u.split("://")[0] if "://" in u else "file") == protocol
        ]
        readers = open_readers(
            mine, filesystem=fs, first_block=first_block, concurrency=io_concurrency()
        )
        out.update((u, r) for u, r in zip(mine, readers, strict=True) if r is not None)
    return out


def is_collection(source: Any) -> bool:
    """Whether ``source`` names several files: a list, a local folder or a glob."""
    if not isinstance(source, str | os.PathLike):
        return True
    text = os.fspath(source)
    return os.path.isdir(text) or bool(_GLOB & set(text))


def classify(
    url: str | os.PathLike[str], *, storage_options: StorageOptions = None
) -> tuple[str, FrameIndex]:
    """What one file holds, from its header: ``"slide"`` (a total pixel matrix),
    ``"enhanced"`` (several frames with per-frame functional groups) or ``"image"``,
    with the file's index (pass it on as ``open_frames(..., index=...)``)."""
    from dicom_dask.images.tiled import is_tiled

    index = index_frames(url, storage_options=storage_options)
    ds = index.header.dataset
    if is_tiled(ds) and "TotalPixelMatrixRows" in ds:
        return "slide", index
    if "PerFrameFunctionalGroupsSequence" in ds and index.header.description.number_of_frames > 1:
        return "enhanced", index
    return "image", index


def classify_source(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    storage_options: StorageOptions = None,
) -> tuple[str, FrameIndex | None, list[str]]:
    """What a file, folder, glob or list holds, reading as few headers as possible.

    One named file gives what [`classify`][dicom_dask.images.sources.classify] gives
    (``"slide"``, ``"enhanced"`` or ``"image"``) with its index. Several files give
    ``"slides"`` when the first DICOM image among them is a tiled instance (a slide
    level or associated image), else ``"series"``, with that file's index; so does a
    DICOMweb study, series or instance. The third item lists the files read before it
    that are not DICOM images (skipped).

    Raises
    ------
    NoImagesError
        When no file of a folder, glob or list is a DICOM image (the message names
        some of them).
    """
    from dicom_dask.frames.dicomweb import index_location, is_dicomweb
    from dicom_dask.images.tiled import is_tiled

    if is_dicomweb(source):  # a study, series or instance: its first image decides
        indexes = index_location(source, storage_options=storage_options)  # type: ignore[arg-type]
        if not indexes:
            raise NoImagesError(f"{source}: no image found")
        kind = "slides" if is_tiled(indexes[0].header.dataset) else "series"
        return kind, indexes[0], []
    urls, discovered = expand_sources(source, storage_options=storage_options)
    if len(urls) == 1 and not discovered:
        kind, index = classify(urls[0], storage_options=storage_options)
        return kind, index, []
    skipped: list[str] = []
    for url in urls:
        try:
            index = index_frames(url, storage_options=storage_options)
        except (NotDicomError, NoPixelDataError):
            if not discovered:
                raise
            skipped.append(url)
            continue
        ds = index.header.dataset
        return ("slides" if is_tiled(ds) else "series"), index, skipped
    where = os.fspath(source) if isinstance(source, str | os.PathLike) else f"{len(urls)} files"
    names = ", ".join(os.path.basename(u.rstrip("/")) for u in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    raise NoImagesError(
        f"{where}: no DICOM image among its {len(urls)} file(s) (not DICOM, or without "
        f"pixel data: {names}{more})"
    )
