"""Cohorts: already-read headers -> entries (volume stacks, slides), and entries -> images.

[`group_headers`][dicom_dask.images.cohort.group_headers] groups parsed headers exactly as
[`list_series`][dicom_dask.images.volume.list_series] and
[`list_slides`][dicom_dask.images.slide.list_slides] do (it is what
[`catalog`][dicom_dask.integrations.catalog.catalog] calls on the headers its workers
read); [`entry_index`][dicom_dask.images.cohort.entry_index] is the index document that
makes an entry self-sufficient; [`open_entry`][dicom_dask.images.cohort.open_entry] opens
an entry (a listing's, or a catalog row) with no header request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dicom_dask.chunks.references import (
    SERIES_FORMAT,
    SERIES_KEY,
    reference_set,
    series_entry,
)
from dicom_dask.chunks.sidecar import entries, index_to_dict, open_indexes
from dicom_dask.errors import LayoutError, NoImagesError
from dicom_dask.frames import FrameIndex
from dicom_dask.frames.storage import redact
from dicom_dask.images.entries import Entry
from dicom_dask.images.geometry import GeometryPolicy
from dicom_dask.images.layout import volume_layout
from dicom_dask.images.level import Level, merge_level
from dicom_dask.images.slide import (
    Slide,
    describe_slides,
    images_from_index,
    instances_entry,
    slide_from_images,
)
from dicom_dask.images.sources import index_many
from dicom_dask.images.tiled import TiledImage, is_tiled, tiled_image
from dicom_dask.images.volume import CHUNK_BYTES, Volume, describe_stacks, series_stacks
from dicom_dask.types import ReferenceSet, StorageOptions

__all__ = ["entry_index", "group_headers", "open_entry"]


def group_headers(indexes: Sequence[FrameIndex], *, where: str = "files") -> list[Entry]:
    """The volume stacks and slides already-read headers make up, one
    [`Entry`][dicom_dask.images.entries.Entry] each: stacks first, as
    [`list_series`][dicom_dask.images.volume.list_series] gives them for the folder that
    holds the files, then slides (and associated images or segmentations with no pyramid
    to join) as [`list_slides`][dicom_dask.images.slide.list_slides] gives them."""
    try:
        stacks = series_stacks(indexes, where=where, discovered=True)
    except NoImagesError:
        stacks = []
    tiled = []
    for index in indexes:
        if is_tiled(index.header.dataset):
            try:
                tiled.append(tiled_image(index))
            except LayoutError:
                continue
    return describe_stacks(stacks) + (describe_slides(tiled) if tiled else [])


def entry_index(
    entry: Entry,
    *,
    keep_identifiers: bool = False,
    documents: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReferenceSet:
    """The index document of ``entry`` (a series index for a volume, a slide index
    otherwise, without kerchunk references): ``open_volume(index=...)`` /
    ``open_slide(index=...)`` and [`open_entry`][dicom_dask.images.cohort.open_entry] open
    it with no header read. Without ``keep_identifiers`` the headers keep only what
    reading needs of the identifying attributes (see ``docs/cloud.md``). ``documents``
    holds files' index entries already made (``index_to_dict(...)["dicom_dask"]`` by URL,
    with the same ``keep_identifiers``), where the headers were read."""
    if not entry.parts:
        raise ValueError("the entry keeps no parsed headers (not made by a listing)")
    if entry["kind"] == "volume":
        made = documents or {}
        files = [
            made.get(ix.url)
            or index_to_dict(ix, {}, keep_identifiers=keep_identifiers)["dicom_dask"]
            for ix in entry.parts
        ]
        return reference_set({}, series=series_entry([dict(f) for f in files]))
    images = list(entry.parts)
    return reference_set({}, slide=instances_entry(images, keep_identifiers=keep_identifiers))


def _value(row: Any, key: str, default: Any = None) -> Any:
    try:
        value = row[key]
    except (KeyError, IndexError, TypeError):
        return default
    return default if value is None else value


def _parts(row: Any, where: str, storage_options: StorageOptions, verify: bool) -> list[Any]:
    """The parsed files of ``row``: kept by a listing, stored in its ``index`` column, or
    (last resort) read again from its ``urls``."""
    kind = str(row["kind"])
    parts = getattr(row, "parts", None)
    if isinstance(parts, tuple) and parts:
        return list(parts)
    doc: Any = _value(row, "index")
    if isinstance(doc, bytes | str) and doc:
        doc = json.loads(doc)
    if isinstance(doc, Mapping):
        if kind == "volume":
            files = entries(doc, SERIES_KEY, "files", SERIES_FORMAT, where)
            return open_indexes(files, source=where, verify=verify, storage_options=storage_options)
        return images_from_index(doc, where, verify=verify, storage_options=storage_options)
    urls = [str(u) for u in _value(row, "urls", [])]
    if not urls:
        raise NoImagesError(f"{where}: the entry has neither an index nor urls")
    indexes = index_many(urls, storage_options=storage_options)
    return indexes if kind == "volume" else [tiled_image(ix) for ix in indexes]


def _same(found: Mapping[str, Any], row: Any, keys: Sequence[str]) -> bool:
    for key in keys:
        want = _value(row, key)
        if want is None:
            continue
        have = found.get(key)
        if key == "orientation":
            have = [round(float(v), 4) for v in have or ()]
            want = [round(float(v), 4) for v in want]
        if str(have) != str(want):
            return False
    return True


def _pick(found: list[Entry], row: Any, keys: Sequence[str], where: str) -> Entry:
    matching = [e for e in found if _same(e, row, keys)]
    if not matching:
        raise NoImagesError(
            f"{where}: its files make up {len(found)} entries, none with the entry's "
            f"{', '.join(keys)}"
        )
    return matching[0]


def open_entry(
    row: Any,
    *,
    storage_options: StorageOptions = None,
    verify: bool = False,
    raw: bool = False,
    backend: str = "auto",
    fill_value: int | float = 0,
    geometry: GeometryPolicy | str = "raise",
) -> Volume | Slide | Level:
    """Open one entry of a listing or catalog with no header request.

    Parameters
    ----------
    row : mapping or pandas.Series
        An entry of [`list_series`][dicom_dask.images.volume.list_series] or
        [`list_slides`][dicom_dask.images.slide.list_slides] (it keeps the parsed
        headers), or a row of [`catalog`][dicom_dask.integrations.catalog.catalog]
        (``df.iloc[i]``, also after a Parquet round trip: its ``index`` column holds the
        parsed headers). A mapping with only ``kind`` and ``urls`` reads those files'
        headers (and no other file).
    storage_options : mapping or callable, optional
        fsspec options for the pixel reads (as in ``open_volume``).
    verify : bool
        Compare each file's size and ETag / generation / mtime with what the catalog
        recorded before returning (one metadata request per file, concurrently), else
        [`StaleIndexError`][dicom_dask.errors.StaleIndexError]. Off by default: nothing is
        requested until pixels are read.
    raw, backend, fill_value, geometry
        As in [`open_volume`][dicom_dask.images.volume.open_volume] and
        [`open_slide`][dicom_dask.images.slide.open_slide].

    Returns
    -------
    Volume, Slide or Level
        A [`Volume`][dicom_dask.images.volume.Volume] for kind ``"volume"``, a
        [`Slide`][dicom_dask.images.slide.Slide] for ``"slide"`` (and a segmentation with
        a pyramid), a [`Level`][dicom_dask.images.level.Level] for an associated image
        listed on its own (``"label"``, ``"overview"``, ``"thumbnail"``).
    """
    kind = str(row["kind"])
    where = redact(f"{kind} {_value(row, 'series_instance_uid', '')}".strip())
    parts = _parts(row, where, storage_options, verify)
    if kind == "volume":
        stacks = series_stacks(parts, where=where, discovered=False)
        described = describe_stacks(stacks)
        entry = _pick(described, row, ("series_instance_uid", "stack", "orientation"), where)
        stack = next(s for s, e in zip(stacks, described, strict=True) if e is entry)
        layout = volume_layout(stack, where=where, policy=GeometryPolicy.coerce(geometry))
        return Volume.from_layout(
            layout,
            raw=raw,
            backend=backend,
            fill_value=fill_value,
            storage_options=storage_options,
            chunk_bytes=CHUNK_BYTES,
        )
    images: list[TiledImage] = parts
    entry = _pick(describe_slides(images), row, ("series_instance_uid", "kind"), where)
    options: dict[str, Any] = {
        "raw": raw,
        "backend": backend,
        "fill_value": fill_value,
        "storage_options": storage_options,
    }
    if kind in ("slide", "segmentation") and any(
        im.image_type not in ("LABEL", "OVERVIEW", "THUMBNAIL") for im in entry.parts
    ):
        return slide_from_images(entry.parts, where=where, **options)
    return merge_level([entry.parts[0]], **options)
