"""``catalog``: one table of every volume stack and slide under a prefix, read once.

The files under a folder, bucket prefix or HTTP listing are listed once; every header is
read once (on the workers of an active `distributed.Client`, as tasks over batches of
files, else in threads); the headers are grouped exactly as
[`list_series`][dicom_dask.images.volume.list_series] and
[`list_slides`][dicom_dask.images.slide.list_slides] group them
([`group_headers`][dicom_dask.images.cohort.group_headers]). Each row keeps the parsed
index of its files (``index``, JSON), so that the table alone (also after
``to_parquet`` / ``pandas.read_parquet``) opens any row with
[`open_entry`][dicom_dask.images.cohort.open_entry] and no header request.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from dicom_dask.chunks.sidecar import index_to_dict
from dicom_dask.config import io_concurrency, threads
from dicom_dask.errors import DicomDaskError
from dicom_dask.frames import FrameIndex, index_frames
from dicom_dask.frames.storage import redact, resolve_fs
from dicom_dask.frames.values import fast_get
from dicom_dask.images.cohort import entry_index, group_headers
from dicom_dask.images.entries import Entry
from dicom_dask.images.series import slice_records
from dicom_dask.images.sources import expand_sources
from dicom_dask.images.tiled import is_tiled, tiled_image
from dicom_dask.integrations.writers.options import active_client
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import pandas

__all__ = ["COLUMNS", "Catalog", "catalog", "read_headers"]

#: The columns of a catalog, in order. ``index`` is the entry's parsed index (a series
#: or slide index document as JSON text); ``description`` what the listing says of it
#: (JSON text); ``orientation`` is empty for a slide.
COLUMNS = (
    "kind",
    "series_instance_uid",
    "study_instance_uid",
    "modality",
    "series_description",
    "stack",
    "orientation",
    "files",
    "frames",
    "shape",
    "dtype",
    "urls",
    "description",
    "index",
)
#: Columns of the table of files that are in no row (not DICOM, unreadable, or a DICOM
#: file that is neither a slice of a volume nor part of a slide).
ERROR_COLUMNS = ("url", "error", "reason")
#: Files per task on a cluster (each task reads its batch in threads).
BATCH_FILES = 64
#: Catalogs of at least this many files show a progress bar (``progress=None``).
PROGRESS_FILES = 1000
#: First header request per file (256 KiB): enhanced and vendor (Siemens) MR headers pass
#: 64 KiB; over S3 the larger GET costs the same round trip, a second one would not.
_FIRST_BLOCK = 262144


class Catalog(NamedTuple):
    """What [`catalog`][dicom_dask.integrations.catalog.catalog] returns with
    ``errors=True``: the entries, and the files that are in none, with the reason."""

    entries: pandas.DataFrame
    errors: pandas.DataFrame


# -- reading headers ---------------------------------------------------------------------
Found = tuple[str, FrameIndex | None, str, str, dict[str, Any] | None]


class _Listed:
    """A filesystem whose ``info()`` answers from the catalog's listing (size, ETag,
    modification time, as listed) for the files listed, delegating everything else: a
    worker reads each header without asking for its size again."""

    def __init__(self, fs: Any, listing: dict[str, dict[str, Any]]) -> None:
        self._fs, self._listing = fs, listing

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        found = self._listing.get(path)
        return dict(found) if found is not None else self._fs.info(path, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


def _listing(urls: Sequence[str], storage_options: StorageOptions) -> dict[str, dict[str, Any]]:
    """What the listing said of each file (by filesystem path), where the filesystem keeps
    its listings (``dircache``: object stores): nothing is requested."""
    out: dict[str, dict[str, Any]] = {}
    for url in urls:
        if "://" not in url or "::" in url or url.startswith("file://"):
            continue
        fs, path = resolve_fs(url, storage_options)
        listed = getattr(fs, "dircache", None) or {}
        for entry in listed.get(path.rsplit("/", 1)[0], ()):
            if entry.get("name") == path and entry.get("type") == "file" and "size" in entry:
                out[path] = dict(entry)
    return out


def read_headers(
    urls: Sequence[str],
    storage_options: StorageOptions = None,
    *,
    workers: int | None = None,
    keep_identifiers: bool = False,
    listing: dict[str, dict[str, Any]] | None = None,
    on_read: Callable[[], None] | None = None,
) -> list[Found]:
    """Read the header of each of ``urls`` in threads (one filesystem per protocol): for
    each, ``(url, index, "", "", document)`` (``document``: the file's index entry, see
    `index_to_dict`), or
    ``(url, None, error class, reason, None)`` when it is not a DICOM image or cannot be
    read. The task [`catalog`][dicom_dask.integrations.catalog.catalog] runs on workers
    for each batch of files: the headers are parsed and serialised there. ``listing``
    holds what the catalog's listing said of the files (sizes, ETags: not asked again);
    ``on_read`` is called after each file (a progress bar)."""
    filesystems: dict[str, Any] = {}
    for url in urls:
        protocol = url.split("://")[0] if "://" in url else "file"
        if "::" not in url and protocol not in filesystems:
            fs = resolve_fs(url, storage_options)[0]
            filesystems[protocol] = _Listed(fs, listing) if listing else fs

    def one(url: str) -> Found:
        try:
            return read(url)
        finally:
            if on_read is not None:
                on_read()

    def read(url: str) -> Found:
        protocol = url.split("://")[0] if "://" in url else "file"
        try:
            index = index_frames(
                url,
                storage_options=storage_options,
                filesystem=filesystems.get(protocol) if "::" not in url else None,
                first_block=_FIRST_BLOCK,
            )
        except (DicomDaskError, OSError) as exc:
            return url, None, type(exc).__name__, redact(str(exc)), None
        if is_tiled(index.header.dataset):  # a slide's index keeps its parsed positions
            return url, index, "", "", None
        doc = index_to_dict(index, {}, keep_identifiers=keep_identifiers)["dicom_dask"]
        return url, index, "", "", doc

    local = all("://" not in u or u.startswith("file://") for u in urls)
    n = workers or (threads() if local else io_concurrency())
    if len(urls) <= 1 or n <= 1:
        return [one(u) for u in urls]
    with ThreadPoolExecutor(min(n, len(urls))) as pool:
        return list(pool.map(one, urls))


def _batches(urls: Sequence[str], size: int) -> list[list[str]]:
    return [list(urls[i : i + size]) for i in range(0, len(urls), size)]


def _bar(total: int, enabled: bool) -> Any:
    if not enabled or importlib.util.find_spec("tqdm") is None:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc="catalog")


def _on_client(
    client: Any, urls: Sequence[str], storage_options: StorageOptions, keep: bool, show: bool
) -> list[Found]:
    """The files read as tasks on the client's workers (a dask bag of batches)."""
    import dask.bag as db

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    size = max(1, min(BATCH_FILES, math.ceil(len(urls) / (4 * workers))))
    listing = _listing(urls, storage_options)
    batches = [
        (batch, {p: listing[p] for p in map(_path, batch) if p in listing})
        for batch in _batches(urls, size)
    ]
    bag = db.from_sequence(batches, npartitions=len(batches))
    read = bag.map(_read_batch, storage_options, keep)
    futures = client.compute(read.to_delayed())
    if show:
        from distributed import progress

        progress(futures)
    return [item for future in futures for batch in future.result() for item in batch]


def _path(url: str) -> str:
    return url.split("://", 1)[1] if "://" in url else url


def _read_batch(
    batch: tuple[list[str], dict[str, dict[str, Any]]], storage_options: StorageOptions, keep: bool
) -> list[Found]:
    """One task of a catalog on a cluster: the headers of a batch of files."""
    urls, listing = batch
    return read_headers(urls, storage_options, keep_identifiers=keep, listing=listing)


def _in_threads(
    urls: Sequence[str], storage_options: StorageOptions, keep: bool, show: bool
) -> list[Found]:
    """The files read in threads (a progress bar counts them)."""
    bar = _bar(len(urls), show)
    try:
        return read_headers(
            urls,
            storage_options,
            keep_identifiers=keep,
            on_read=None if bar is None else lambda: bar.update(1),
        )
    finally:
        if bar is not None:
            bar.close()


# -- the table ---------------------------------------------------------------------------
def _row(
    entry: Entry, keep_identifiers: bool, documents: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    first = entry.parts[0]
    index = first if isinstance(first, FrameIndex) else first.index
    ds = index.header.dataset
    description = {k: v for k, v in entry.items() if k not in ("urls",)}
    return {
        "kind": entry["kind"],
        "series_instance_uid": entry["series_instance_uid"],
        "study_instance_uid": str(fast_get(ds, "StudyInstanceUID", "") or ""),
        "modality": str(entry.get("modality", "") or ""),
        "series_description": str(entry.get("series_description", "") or ""),
        "stack": str(entry.get("stack", "") or ""),
        "orientation": [float(v) for v in entry.get("orientation", [])],
        "files": int(entry["files"]),
        "frames": int(entry.get("frames") or sum(len(p.frame_tiles) for p in entry.parts)),
        "shape": [int(v) for v in entry["shape"]],
        "dtype": str(index.header.description.dtype),
        "urls": [str(u) for u in entry["urls"]],
        "description": json.dumps(description, default=str),
        "index": json.dumps(
            entry_index(entry, keep_identifiers=keep_identifiers, documents=documents)
        ),
    }


def _unlisted(index: FrameIndex) -> str:
    """Why a DICOM image is in no row."""
    try:
        if is_tiled(index.header.dataset):
            tiled_image(index)
        else:
            slice_records(index)
    except DicomDaskError as exc:
        return f"in no volume stack or slide: {redact(str(exc))}"
    return (
        "in no volume stack or slide: it repeats an instance already listed (same SOP Instance UID)"
    )


def _tables(found: list[Found], where: str, keep_identifiers: bool) -> Catalog:
    import pandas as pd

    indexes = [ix for _, ix, _, _, _ in found if ix is not None]
    documents = {url: doc for url, _, _, _, doc in found if doc is not None}
    entries = group_headers(indexes, where=where) if indexes else []
    rows = [_row(e, keep_identifiers, documents) for e in entries]
    used = {u for row in rows for u in row["urls"]}
    errors = [(url, error, reason) for url, ix, error, reason, _ in found if ix is None]
    errors += [(ix.url, "NotListed", _unlisted(ix)) for ix in indexes if ix.url not in used]
    return Catalog(
        pd.DataFrame(rows, columns=list(COLUMNS)),
        pd.DataFrame(sorted(errors), columns=list(ERROR_COLUMNS)),
    )


def catalog(
    url: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    storage_options: StorageOptions = None,
    errors: bool = False,
    progress: bool | None = None,
    keep_identifiers: bool = False,
) -> pandas.DataFrame | Catalog:
    """A table of every volume stack and slide under ``url``, one row each.

    Parameters
    ----------
    url : str, path, or list of them
        A folder, bucket prefix (``s3://``, ``gs://``...), HTTP listing (a URL ending in
        ``/``), glob or list of files. Listed once; every header is read once: with an
        active `distributed.Client`, as tasks on its workers (a dask bag of batches of
        files, each read in threads); without one, in threads
        ([`config.io_concurrency`][dicom_dask.config.io_concurrency] for remote files,
        [`config.threads`][dicom_dask.config.threads] for local ones).
    storage_options : mapping or callable, optional
        fsspec options (or a filesystem factory), as in ``open_volume``.
    errors : bool
        Also return the files that are in no row (not DICOM, unreadable, or neither a
        slice nor a tiled instance), with the reason: a
        [`Catalog`][dicom_dask.integrations.catalog.Catalog] ``(entries, errors)``. Such
        files are never an error.
    progress : bool, optional
        Show a progress bar (tqdm when installed; distributed's ``progress`` on a
        client). By default, for catalogs of 1,000 files or more.
    keep_identifiers : bool
        Keep the patient-identifying attributes in the stored headers (``index``).

    Returns
    -------
    pandas.DataFrame or Catalog
        One row per volume stack ([`list_series`][dicom_dask.images.volume.list_series])
        and slide ([`list_slides`][dicom_dask.images.slide.list_slides]), stacks first;
        the columns of `COLUMNS`: ``kind``,
        ``series_instance_uid``, ``modality``, ``files`` (how many), ``shape`` (the
        volume's, or level 0's for a slide), ``urls``, ``index`` (the parsed headers, for
        [`open_entry`][dicom_dask.images.cohort.open_entry])... It round-trips through
        ``to_parquet`` / ``pandas.read_parquet``.
    """
    urls, _ = expand_sources(url, storage_options=storage_options)
    where = redact(os.fspath(url)) if isinstance(url, str | os.PathLike) else "files"
    show = len(urls) >= PROGRESS_FILES if progress is None else progress
    client = active_client()
    read = _in_threads if client is None else partial(_on_client, client)
    found = read(urls, storage_options, keep_identifiers, show)
    order = {u: i for i, u in enumerate(urls)}
    found.sort(key=lambda item: order.get(item[0], len(order)))
    tables = _tables(found, where, keep_identifiers)
    return tables if errors else tables.entries
