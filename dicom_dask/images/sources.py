"""Many files at once: expand a folder, glob or list into URLs and index them concurrently."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from fsspec.implementations.local import LocalFileSystem

from dicom_dask.config import io_concurrency
from dicom_dask.enums import Kind
from dicom_dask.errors import (
    InvalidOptionError,
    NoImagesError,
    NoPixelDataError,
    NotDicomError,
    SourceNotFoundError,
)
from dicom_dask.frames import BlockReader, FrameIndex, canonical_url, index_frames, open_readers
from dicom_dask.frames.fetch import call_fs
from dicom_dask.frames.ranged_get import supports_head
from dicom_dask.frames.source import open_object
from dicom_dask.frames.storage import redact, resolve_fs
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    from dicom_dask.images.instance import Frames
    from dicom_dask.images.slide import Slide
    from dicom_dask.images.volume import Volume

__all__ = [
    "Listing",
    "classify",
    "classify_source",
    "decide_kind",
    "expand_sources",
    "file_kind",
    "index_dicomweb",
    "index_many",
    "is_collection",
    "kind_of",
    "list_sources",
    "open_source",
    "read_once",
    "sidecar_kind",
    "source_kind",
]

T = TypeVar("T")
_GLOB = set("*?[")


@dataclass
class _Learned:
    """What one call of a front end has learned so far (see
    [`read_once`][dicom_dask.images.sources.read_once])."""

    #: Listings by ``(sources, id(storage_options))``.
    listings: dict[tuple[Any, ...], Listing] = field(default_factory=dict)
    #: Headers by URL, or why a file is not an image.
    indexes: dict[str, _Indexed] = field(default_factory=dict)
    #: The images of DICOMweb locations, by ``(URL, id(storage_options))``.
    locations: dict[tuple[str, int], list[FrameIndex]] = field(default_factory=dict)


_ONCE: ContextVar[_Learned | None] = ContextVar("dicom_dask_read_once", default=None)


@contextlib.contextmanager
def read_once() -> Iterator[None]:
    """Within the block, each source is listed once and each file's header read once.

    A front end that first decides what a source holds and then opens it (as
    [`open_source`][dicom_dask.images.sources.open_source] does, and so
    ``xarray.open_dataset(..., engine="dicom")`` and ``dicom-dask info``) reads the
    listing and the headers the decision read, not the files again: over S3 a slide file
    opens in the requests of ``open_slide`` alone. What is learned lives as long as the
    block (nested blocks share the outermost one), so a file rewritten after it is left
    is read afresh by the next call.
    """
    if _ONCE.get() is not None:
        yield
        return
    token = _ONCE.set(_Learned())
    try:
        yield
    finally:
        _ONCE.reset(token)


class _Probe(NamedTuple):
    """What ``_probe`` learned about one named source."""

    folder: bool
    info: Mapping[str, Any] | None = None  # a file's info(), when asked for
    reader: BlockReader | None = None  # a file opened with its first block
    missing: bool = False  # an object store has no object of that name (a folder, or none)


def _probe(fs: Any, path: str, url: str) -> _Probe:
    """Whether ``path`` is a folder; for a file, its ``info()`` or its reader (first block
    read) when the answer came with one."""
    # HTTP has no folders: isdir() GETs the whole URL to look for links in it, which
    # for a file means downloading it. A listing page is asked for with a trailing "/".
    if {"http", "https"} & set(fs.protocol if isinstance(fs.protocol, tuple) else [fs.protocol]):
        return _Probe(path.endswith("/"))
    if _is_remote(fs) and (url.endswith("/") or "/" not in path.strip("/")):
        # a bucket, or a name ending in "/": an object store's isdir() costs a HEAD and a
        # listing; the listing that follows tells as much (it is empty when there is no
        # such folder)
        return _Probe(True)
    if _is_remote(fs) and supports_head(fs):
        # the header's first GET asks whether the object exists: a file is then opened
        # (no HEAD), a 404 means a folder, or nothing (its listing is empty). One request
        # for a file, two for a folder (fsspec's isdir() and find() make a HEAD and two
        # listings)
        if path.rstrip("/") in getattr(fs, "dircache", {}):  # this filesystem listed it
            return _Probe(True)
        reader = open_object(url, filesystem=fs)
        return _Probe(reader is None, reader=reader, missing=reader is None)
    if path.endswith("/"):
        return _Probe(bool(call_fs(url, fs.isdir, path)))
    try:  # one request (HEAD on object stores) for the usual case, a file (retried)
        info = call_fs(url, fs.info, path)
    except FileNotFoundError:
        return _Probe(False)
    return _Probe(info.get("type") == "directory", info=info)


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
    #: A remote file named alone, opened with its first block by the request that told
    #: it is a file (``open_object``): pass them on to
    #: [`index_many`][dicom_dask.images.sources.index_many] as ``readers``.
    readers: Mapping[str, BlockReader] = field(default_factory=dict)


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
    ends with ``/`` and a file otherwise, without a request to ask which. One name alone
    over S3 or GCS is asked with the header's first GET: a file is then opened
    ([`Listing.readers`][dicom_dask.images.sources.Listing]), a missing object is a
    folder to list; over HTTP a folder ends with ``/``.

    Raises
    ------
    SourceNotFoundError
        A name alone with no object of that name, nor any under it.
    NoImagesError
        No source given, or a folder or glob that matches no file.
    """
    if isinstance(source, str | os.PathLike):
        items = [os.fspath(source)]
    else:
        items = [os.fspath(s) for s in source]
    if not items:
        raise NoImagesError("no file given: the list of sources is empty")
    memo = _ONCE.get()
    key = (*items, id(storage_options))
    if memo is not None and key in memo.listings:
        return memo.listings[key]
    listing = _list(items, storage_options)
    if memo is not None:
        memo.listings[key] = listing
    return listing


def _list(items: Sequence[str], storage_options: StorageOptions) -> Listing:
    urls: list[str] = []
    infos: dict[str, Mapping[str, Any]] = {}
    readers: dict[str, BlockReader] = {}
    discovered = False
    for item in items:
        url = canonical_url(item)
        fs, path = resolve_fs(url, storage_options)
        protocol = url.split("://")[0] + "://" if "://" in url else ""
        missing = False
        if _GLOB & set(path):
            found = dict(sorted(call_fs(url, fs.glob, path, detail=True).items()))
            discovered = True
        elif len(items) > 1 and _is_remote(fs) and not url.endswith("/"):
            urls.append(url)  # a named object: its header's GET tells its size, no HEAD
            continue
        else:
            probe = _probe(fs, path, url)  # retried like reads
            if not probe.folder:
                urls.append(url)
                if probe.info is not None:
                    infos[url] = probe.info
                if probe.reader is not None:
                    readers[url] = probe.reader
                continue
            missing = probe.missing
            found = {
                p: i
                for p, i in sorted(call_fs(url, fs.find, path, detail=True).items())
                if not os.path.basename(p).startswith(".") and i.get("type") != "directory"
            }
            discovered = True
        if not found and missing:  # no object of that name, and none under it either
            raise SourceNotFoundError(f"{redact(url)}: no such file or object, nor a folder")
        if not found:
            raise NoImagesError(f"{url}: matches no file")
        # most filesystems list bare paths; HTTP lists full URLs
        for p, info in found.items():
            full = protocol + p if protocol and "::" not in url and "://" not in p else p
            urls.append(full)
            infos[full] = info
    return Listing(urls, discovered, infos, readers)


def index_dicomweb(source: Any, *, storage_options: StorageOptions = None) -> list[FrameIndex]:
    """The indexes of the images of a DICOMweb study, series or instance (its metadata
    requests); inside [`read_once`][dicom_dask.images.sources.read_once], once."""
    from dicom_dask.frames.dicomweb import index_location, location

    memo = _ONCE.get()
    key = (location(source).url(), id(storage_options))
    if memo is not None and key in memo.locations:
        return list(memo.locations[key])
    indexes = index_location(source, storage_options=storage_options)
    if memo is not None:
        memo.locations[key] = indexes
    return list(indexes)


def _map(func: Callable[[str], T], urls: Sequence[str], threads: int) -> list[T]:
    if len(urls) == 1 or threads <= 1:
        return [func(u) for u in urls]
    with ThreadPoolExecutor(min(threads, io_concurrency(), len(urls))) as pool:
        return list(pool.map(func, urls))


def index_many(
    urls: Sequence[str],
    *,
    storage_options: StorageOptions = None,
    skip_non_images: bool = False,
    threads: int | None = None,
    first_block: int = 65536,
    infos: Mapping[str, Mapping[str, Any]] | None = None,
    readers: Mapping[str, BlockReader] | None = None,
) -> list[FrameIndex]:
    """Index every file of ``urls`` concurrently (headers and frame ranges only).

    With ``skip_non_images``, files that are not DICOM or have no pixel data
    (DICOMDIR, structured reports, stray files in a folder) are left out. ``infos``
    (what a listing reported, by URL: [`Listing.infos`][dicom_dask.images.sources.Listing])
    spares the request for each file's size; without it, over HTTP, S3 and GCS, the
    header's first request tells the size too: one request per small file either way.
    ``readers`` (files already opened with their first block:
    [`Listing.readers`][dicom_dask.images.sources.Listing]) are read on, not opened again.
    Remote files are read by ``threads`` threads (default
    [`io_concurrency`][dicom_dask.config.io_concurrency]), so a series of N files opens
    in about N / ``threads`` latencies. Inside [`read_once`][dicom_dask.images.sources.read_once],
    a header read before is not read again.
    """
    memo = _ONCE.get()
    known = memo.indexes if memo is not None else {}
    todo = [u for u in urls if u not in known]
    read = _index_all(
        todo,
        storage_options=storage_options,
        threads=threads,
        first_block=first_block,
        infos=infos or {},
        readers=dict(readers or {}),
        skip_non_images=skip_non_images,
    )
    found = dict(zip(todo, read, strict=True))
    if memo is not None:
        memo.indexes.update(found)
    out = []
    for url in urls:
        got = found[url] if url in found else known[url]
        if isinstance(got, FrameIndex):
            out.append(got)
        elif not skip_non_images:
            raise got  # read before, inside read_once
    return out


#: A file indexed, or why it is not an image (kept to skip it, or to raise it again).
_Indexed = FrameIndex | NotDicomError | NoPixelDataError


def _index_all(
    urls: Sequence[str],
    *,
    storage_options: StorageOptions,
    threads: int | None,
    first_block: int,
    infos: Mapping[str, Mapping[str, Any]],
    readers: dict[str, BlockReader],
    skip_non_images: bool,
) -> list[_Indexed]:
    """[`index_many`][dicom_dask.images.sources.index_many]'s reads: a file that is not an
    image gives its error when ``skip_non_images``, else raises it."""
    # one filesystem for all the URLs of a protocol (building one per file costs more
    # than reading a small header)
    filesystems: dict[str, Any] = {}
    for url in urls:
        protocol = url.split("://")[0] if "://" in url else "file"
        if "::" not in url and protocol not in filesystems:
            filesystems[protocol] = resolve_fs(url, storage_options)[0]

    def one(url: str, reader: BlockReader | None) -> _Indexed:
        protocol = url.split("://")[0] if "://" in url else "file"
        try:
            return index_frames(
                url,
                storage_options=storage_options,
                filesystem=filesystems.get(protocol) if "::" not in url else None,
                first_block=first_block,
                info=infos.get(url),
                reader=reader,
            )
        except (NotDicomError, NoPixelDataError) as exc:
            if skip_non_images:
                return exc
            raise

    # local files are parsed faster in one thread (pydicom holds the GIL); remote ones
    # wait on the network, concurrently
    if all("://" not in u or u.startswith("file://") for u in urls):
        threads = 1
    elif threads is None:
        threads = io_concurrency()
    out: list[_Indexed] = []
    for start in range(0, len(urls), _BATCH):  # first blocks in one wave, then parse
        batch = urls[start : start + _BATCH]
        opened = {u: readers.pop(u) for u in batch if u in readers}
        if threads > 1:
            rest = [u for u in batch if u not in opened]
            opened.update(_first_blocks(rest, filesystems, first_block))
        out += _map(functools.partial(_with_reader, one, opened), batch, threads)
    return out


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
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    index: FrameIndex | None = None,
) -> tuple[str, FrameIndex]:
    """What one file holds, from its header: ``"slide"`` (a total pixel matrix),
    ``"enhanced"`` (several frames with per-frame functional groups) or ``"image"``,
    with the file's index (pass it on as ``open_frames(..., index=...)``; or pass an
    index already built). What it opens as is
    [`file_kind`][dicom_dask.images.sources.file_kind]'s answer."""
    from dicom_dask.images.tiled import is_tiled

    if index is None:
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
    that are not DICOM images (skipped). What a front end opens a source as is
    [`source_kind`][dicom_dask.images.sources.source_kind]'s answer, built on this.

    Raises
    ------
    NoImagesError
        When no file of a folder, glob or list is a DICOM image (the message names
        some of them).
    """
    from dicom_dask.frames.dicomweb import is_dicomweb
    from dicom_dask.images.tiled import is_tiled

    index, skipped, one = _first_image(source, storage_options=storage_options)
    if one and not is_dicomweb(source):
        kind, _ = classify(index.url, storage_options=storage_options, index=index)
        return kind, index, []
    return ("slides" if is_tiled(index.header.dataset) else "series"), index, skipped


def _matches(index: FrameIndex, select: int | str | None) -> bool:
    """Whether ``select`` (a UID or label as ``open_slide`` / ``open_volume`` take it) names
    the slide or series ``index`` belongs to; an index number or None matches any."""
    if not isinstance(select, str):
        return True
    ds = index.header.dataset
    names = ("SeriesInstanceUID", "ContainerIdentifier", "FrameOfReferenceUID", "StackID")
    return any(str(ds.get(name, "") or "") == select for name in names)


def _first_image(
    source: Any, *, storage_options: StorageOptions, select: int | str | None = None
) -> tuple[FrameIndex, list[str], bool]:
    """The index of the first DICOM image of ``source`` (the first ``select`` names, if
    any does), the files before it that are not DICOM images, and whether ``source`` is
    one file (a named file, a list of one, a DICOMweb instance)."""
    from dicom_dask.frames.dicomweb import is_dicomweb, location

    if is_dicomweb(source):  # a study, series or instance: its first image decides
        indexes = index_dicomweb(source, storage_options=storage_options)
        if not indexes:
            raise NoImagesError(f"{source}: no image found")
        chosen = next((ix for ix in indexes if _matches(ix, select)), indexes[0])
        return chosen, [], bool(location(source).instance)
    listing = list_sources(source, storage_options=storage_options)
    urls, discovered = listing.urls, listing.discovered

    def index(url: str) -> list[FrameIndex]:  # one at a time: the first may be the one
        return index_many(
            [url],
            storage_options=storage_options,
            skip_non_images=discovered,
            infos=listing.infos,
            readers=listing.readers,
        )

    if len(urls) == 1 and not discovered:
        return index(urls[0])[0], [], True
    skipped: list[str] = []
    first: FrameIndex | None = None
    for url in urls:
        got = index(url)
        if not got:  # not DICOM, or without pixel data
            skipped.append(url)
            continue
        found = got[0]
        first = first or found
        if _matches(found, select):
            return found, skipped, False
    if first is not None:  # select names none of them: the opener says so
        return first, skipped, False
    where = os.fspath(source) if isinstance(source, str | os.PathLike) else f"{len(urls)} files"
    names = ", ".join(os.path.basename(u.rstrip("/")) for u in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    raise NoImagesError(
        f"{where}: no DICOM image among its {len(urls)} file(s) (not DICOM, or without "
        f"pixel data: {names}{more})"
    )


def _group_item(groups: Sequence[Any], name: str) -> Any:
    """The item of functional group ``name`` in the first of ``groups`` that has it."""
    for group in groups:
        sequence = group.get(name) if group is not None else None
        if sequence:
            return sequence[0]
    return None


def _in_patient_space(ds: Any, frames: int) -> bool:
    """Whether the frames of ``ds`` have positions and orientations in patient space, as
    [`open_volume`][dicom_dask.images.volume.open_volume] needs them: Plane Position and
    Plane Orientation (Patient) functional groups (the first frame's or shared ones), or
    Image Position and Orientation (Patient) for one frame (or frames along a Grid Frame
    Offset Vector, as in RT Dose)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        shared = ds.get("SharedFunctionalGroupsSequence")
        groups = [per_frame[0], shared[0] if shared else None]
        plane = _group_item(groups, "PlanePositionSequence")
        orientation = _group_item(groups, "PlaneOrientationSequence")
        return (
            plane is not None
            and "ImagePositionPatient" in plane
            and orientation is not None
            and "ImageOrientationPatient" in orientation
        )
    placed = "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
    return placed and (frames == 1 or "GridFrameOffsetVector" in ds)


def file_kind(index: FrameIndex) -> Kind:
    """What one indexed file opens as (the one-file half of the rule of
    [`source_kind`][dicom_dask.images.sources.source_kind])."""
    from dicom_dask.images.tiled import is_tiled

    ds = index.header.dataset
    if is_tiled(ds) and "TotalPixelMatrixRows" in ds:
        return Kind.SLIDE
    if _in_patient_space(ds, index.header.description.number_of_frames):
        return Kind.VOLUME
    return Kind.FRAMES


def decide_kind(
    source: Any, *, storage_options: StorageOptions = None, select: int | str | None = None
) -> tuple[Kind, FrameIndex | None]:
    """[`source_kind`][dicom_dask.images.sources.source_kind]'s answer and, for one file,
    its index (pass it on as ``open_frames(..., index=...)``: its header is not read
    again); None for a collection (a folder, glob, list, DICOMweb study or series)."""
    from dicom_dask.images.tiled import is_tiled

    index, _, one = _first_image(source, storage_options=storage_options, select=select)
    if one:
        return file_kind(index), index
    return (Kind.SLIDE if is_tiled(index.header.dataset) else Kind.VOLUME), None


def source_kind(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Any,
    *,
    storage_options: StorageOptions = None,
    select: int | str | None = None,
) -> Kind:
    """What ``source`` opens as: the one rule every front end follows.

    One file (a path or URL, a list of one, a DICOMweb instance) is decided from its
    header:

    1. a tiled image with a total pixel matrix (a whole-slide level, or a label,
       overview or thumbnail image; a SEG or Parametric Map on a slide) is a
       [`Kind.SLIDE`][dicom_dask.enums.Kind];
    2. an image whose frames have positions and orientations in patient space is a
       [`Kind.VOLUME`][dicom_dask.enums.Kind]: an enhanced (or legacy converted) CT/MR,
       PET or a SEG over CT with Plane Position / Plane Orientation (Patient) functional
       groups, one single-frame CT/MR slice with Image Position / Orientation (Patient)
       (a volume of one slice), an RT Dose with a Grid Frame Offset Vector;
    3. anything else is [`Kind.FRAMES`][dicom_dask.enums.Kind]: an ultrasound or XA
       cine, a secondary capture, a radiograph, an enhanced MR stripped of its
       functional groups.

    A collection (a folder, a glob, a list of several files, a DICOMweb study or series)
    is a slide when its first DICOM image is tiled, else a volume (a series). With
    ``select`` naming a slide or series by UID or label (Series Instance UID,
    Container Identifier, Frame of Reference UID, Stack ID), the first image it names
    decides; an index number does not change the decision.

    Only the headers needed are read: one file's, or a folder's first images.

    Raises
    ------
    NoImagesError
        A folder, glob or list holds no DICOM image.
    NotDicomError, NoPixelDataError
        A named file is not a DICOM image.
    """
    return decide_kind(source, storage_options=storage_options, select=select)[0]


def sidecar_kind(
    index: str | os.PathLike[str] | Mapping[str, Any], *, storage_options: StorageOptions = None
) -> tuple[Kind, dict[str, Any]]:
    """What an index sidecar describes (a slide, a series or one file's frames) and the
    loaded document (pass it on as ``index=``, it is not read again)."""
    from dicom_dask.chunks.sidecar import load_index

    doc = load_index(index, storage_options=storage_options)
    if "dicom_dask_slide" in doc:
        return Kind.SLIDE, doc
    if "dicom_dask_series" in doc:
        return Kind.VOLUME, doc
    return Kind.FRAMES, doc


def _check_options(opener: Callable[..., Any], kind: Kind, options: Mapping[str, Any]) -> None:
    import inspect

    accepted = inspect.signature(opener).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidOptionError(
            f"{', '.join(n + '=' for n in unknown)} does not apply to a {kind} "
            f"({opener.__name__} takes {', '.join(n for n in accepted if n != 'url')})"
        )


def open_source(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Any,
    *,
    kind: Kind | str | None = None,
    storage_options: StorageOptions = None,
    select: int | str | None = None,
    **options: Any,
) -> Frames | Volume | Slide:
    """Open ``source`` as what it holds: its frames, a volume or a slide.

    Parameters
    ----------
    source : str, path, list, DicomWebLocation
        A file, folder, glob, list of files, fsspec URL or DICOMweb location.
    kind : Kind or str, optional
        ``"frames"``, ``"volume"`` or ``"slide"`` (any case); default: as
        [`source_kind`][dicom_dask.images.sources.source_kind] decides (from the index
        sidecar's kind when ``index=`` is given).
    storage_options : mapping or callable, optional
        fsspec options (or a filesystem factory), as the openers take them.
    select : int or str, optional
        Which slide or series of a folder that holds several (see
        [`open_slide`][dicom_dask.images.slide.open_slide],
        [`open_volume`][dicom_dask.images.volume.open_volume]); not for frames.
    **options
        Passed to [`open_frames`][dicom_dask.images.instance.open_frames],
        [`open_volume`][dicom_dask.images.volume.open_volume] or
        [`open_slide`][dicom_dask.images.slide.open_slide] (``index``, ``raw``,
        ``backend``, ``geometry``...); one the opener does not take raises
        [`InvalidOptionError`][dicom_dask.errors.InvalidOptionError].

    Returns
    -------
    Frames, Volume or Slide
        As the kind says.

    Raises
    ------
    InvalidOptionError
        An unknown ``kind``, ``select`` for frames, or an option the opener does not take.
    """
    with read_once():  # the opener reads no listing or header the decision read
        return _open_source(source, kind, storage_options, select, options)


def _open_source(
    source: Any,
    kind: Kind | str | None,
    storage_options: StorageOptions,
    select: int | str | None,
    options: dict[str, Any],
) -> Frames | Volume | Slide:
    from dicom_dask.images.instance import open_frames
    from dicom_dask.images.slide import open_slide
    from dicom_dask.images.volume import open_volume

    found: FrameIndex | None = None
    if kind is not None:
        kind = Kind.coerce(kind)
    elif options.get("index") is not None:
        kind, options["index"] = sidecar_kind(options["index"], storage_options=storage_options)
    else:
        kind, found = decide_kind(source, storage_options=storage_options, select=select)
    if kind is Kind.SLIDE:
        _check_options(open_slide, kind, options)
        return open_slide(source, storage_options=storage_options, select=select, **options)
    if kind is Kind.VOLUME:
        _check_options(open_volume, kind, options)
        return open_volume(source, storage_options=storage_options, select=select, **options)
    _check_options(open_frames, kind, options)
    if select is not None:
        raise InvalidOptionError(
            f"{_where(source)} opens as one image's frames: select= picks a slide or series "
            "of a folder"
        )
    url: Any = source
    if isinstance(source, Sequence) and not isinstance(source, str):  # a list of files
        if len(source) != 1:
            raise InvalidOptionError(
                f"{_where(source)}: frames are those of one file, not of {len(source)} files"
            )
        url = source[0]
    if found is not None and options.get("index") is None:
        options["index"] = found
    return open_frames(url, storage_options=storage_options, **options)


def kind_of(opened: Frames | Volume | Slide) -> Kind:
    """The [`Kind`][dicom_dask.enums.Kind] of what
    [`open_source`][dicom_dask.images.sources.open_source] gave."""
    from dicom_dask.images.instance import Frames
    from dicom_dask.images.slide import Slide
    from dicom_dask.images.volume import Volume

    for kind, cls in ((Kind.FRAMES, Frames), (Kind.VOLUME, Volume), (Kind.SLIDE, Slide)):
        if isinstance(opened, cls):
            return kind
    raise InvalidOptionError(f"not a Frames, Volume or Slide: {type(opened).__name__}")


def _where(source: Any) -> str:
    from dicom_dask.frames.storage import redact

    if isinstance(source, str | os.PathLike):
        return redact(os.fspath(source))
    if isinstance(source, Sequence):
        return f"{len(source)} files"
    return str(source.url()) if hasattr(source, "url") else str(source)
