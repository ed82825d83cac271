"""Kerchunk / fsspec reference sets of frames, slides and volumes.

Shared with the VirtualiZarr parser:
[`virtual_arrays`][dicom_dask.integrations.kerchunk.virtual_arrays] names the arrays of a
source the way kerchunk tools expect (``frames``, ``volume``, or one group per slide level
holding ``image``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicom_dask.chunks.manifest import ChunkManifest, parse_chunk_key, reference
from dicom_dask.chunks.numcodec import chain_filter
from dicom_dask.chunks.references import reference_set
from dicom_dask.chunks.sidecar import check_sources, sources_entry
from dicom_dask.chunks.store import DicomStore
from dicom_dask.enums import Kind
from dicom_dask.frames.deidentify import deidentify_attributes
from dicom_dask.images.sources import kind_of, open_source
from dicom_dask.types import ReferenceSet, SourcesEntry, StorageOptions

__all__ = [
    "VirtualArray",
    "check_references",
    "documents",
    "open_store",
    "to_kerchunk",
    "v2_references",
    "virtual_arrays",
]

#: The values ``kind=`` takes (those of [`Kind`][dicom_dask.enums.Kind]).
KINDS = tuple(k.value for k in Kind)


@dataclass(frozen=True)
class VirtualArray:
    """One array of a source, placed for kerchunk / VirtualiZarr.

    Attributes
    ----------
    group : str
        The group holding it (``""`` for the root, ``"0"``, ``"1"``... for slide levels).
    name : str
        The variable name (``"frames"``, ``"volume"`` or ``"image"``).
    metadata : dict
        The array's zarr v3 ``zarr.json`` document (our codec chain).
    manifest : ChunkManifest
        Where its chunks are.
    """

    group: str
    name: str
    metadata: dict[str, Any]
    manifest: ChunkManifest

    @property
    def path(self) -> str:
        """``group/name`` (or ``name`` at the root)."""
        return f"{self.group}/{self.name}" if self.group else self.name


def _open(
    url: str | os.PathLike[str] | list[str],
    *,
    kind: Kind | str | None,
    storage_options: StorageOptions,
    select: int | str | None = None,
) -> tuple[Kind, Any]:
    """``(kind, opened)``: the Frames, Slide or Volume ``url`` holds, as
    [`open_source`][dicom_dask.images.sources.open_source] opens it."""
    opened = open_source(url, kind=kind, storage_options=storage_options, select=select)
    return kind_of(opened), opened


def _sources(kind: Kind, opened: Any) -> SourcesEntry:
    """The files a reference set reads, with their size and identity."""
    if kind == "frames":
        return sources_entry([opened.index])
    if kind == "slide":
        levels = [*opened.pyramid, *opened.associated.values()]
        return sources_entry(im.index for lv in levels for im in lv.images)
    return sources_entry(opened.indexes)


def open_store(
    url: str | os.PathLike[str] | list[str],
    *,
    kind: Kind | str | None = None,
    storage_options: StorageOptions = None,
) -> tuple[Kind, DicomStore]:
    """``(kind, store)``: the [`DicomStore`][dicom_dask.chunks.store.DicomStore] of ``url``.

    ``kind`` defaults to what [`source_kind`][dicom_dask.images.sources.source_kind]
    decides (the rule every front end follows).
    """
    kind, opened = _open(url, kind=kind, storage_options=storage_options)
    store = opened.store
    assert store is not None  # an opened volume has one
    return kind, store


def check_references(
    refs: Mapping[str, Any],
    *,
    relocate: Mapping[str, str] | None = None,
    storage_options: StorageOptions = None,
) -> None:
    """Check that a reference set from [`to_kerchunk`][dicom_dask.integrations.kerchunk.to_kerchunk]
    still describes its files before handing it to fsspec's ``ReferenceFileSystem``.

    Each file's size and ETag / generation / mtime (as recorded under
    ``"dicom_dask_sources"``) are compared with what the filesystem reports now, one
    metadata request per file; a rewritten file raises
    [`StaleIndexError`][dicom_dask.errors.StaleIndexError]. ``relocate`` maps URL
    prefixes of the references to those of copies (only sizes are compared); the
    references themselves must then be rewritten to the copies' URLs by the caller.
    """
    check_sources(refs, relocate=relocate, storage_options=storage_options)


def documents(store: DicomStore, *, keep_identifiers: bool = False) -> dict[str, Any]:
    """The store's ``zarr.json`` documents, parsed; without ``keep_identifiers`` their
    attributes as [`deidentify_attributes`][dicom_dask.frames.deidentify.deidentify_attributes]
    leaves them (UIDs replaced, no Container Identifier, relative acquisition times)."""
    docs = {k: json.loads(v) for k, v in store.documents.items()}
    if keep_identifiers:
        return docs
    for doc in docs.values():
        if "attributes" in doc:
            doc["attributes"] = deidentify_attributes(doc["attributes"])
    return docs


def virtual_arrays(
    store: DicomStore, *, kind: Kind | str, keep_identifiers: bool = False
) -> tuple[dict[str, Any], list[VirtualArray]]:
    """The root attributes and named arrays of a store opened as ``kind`` (attributes
    without identifiers unless ``keep_identifiers``, see
    [`documents`][dicom_dask.integrations.kerchunk.documents])."""
    kind = Kind.coerce(kind)
    documents_ = documents(store, keep_identifiers=keep_identifiers)
    if kind is not Kind.SLIDE:
        doc = documents_["zarr.json"]
        return {}, [VirtualArray("", kind.value, doc, store.manifests[""])]
    root = documents_["zarr.json"].get("attributes", {})
    attrs = {"dicom_dask": root.get("dicom_dask", {})}  # OME multiscales name arrays, not groups
    arrays = [
        VirtualArray(path.rstrip("/"), "image", documents_[f"{path}zarr.json"], manifest)
        for path, manifest in sorted(store.manifests.items(), key=lambda kv: int(kv[0][:-1]))
    ]
    return attrs, arrays


def _v2_zarray(metadata: dict[str, Any]) -> dict[str, Any]:
    codecs = list(metadata["codecs"])
    dtype = np.dtype(metadata["data_type"])
    chunks = metadata["chunk_grid"]["configuration"]["chunk_shape"]
    filters = None
    if len(codecs) == 1 and codecs[0]["name"] == "bytes":  # plain native pixels
        endian = (codecs[0].get("configuration") or {}).get("endian", "little")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    else:
        filters = [
            chain_filter(
                codecs,
                tuple(chunks),
                dtype.name,
                shape=metadata["shape"],
                fill_value=metadata.get("fill_value", 0),
            )
        ]
        dtype = dtype.newbyteorder("<")
    return {
        "zarr_format": 2,
        "shape": list(metadata["shape"]),
        "chunks": list(chunks),
        "dtype": dtype.str,
        "compressor": None,
        "filters": filters,
        "fill_value": metadata.get("fill_value", 0),
        "order": "C",
        "dimension_separator": ".",
    }


def v2_references(attrs: dict[str, Any], arrays: list[VirtualArray]) -> dict[str, Any]:
    """Kerchunk references (zarr v2: ``.zgroup``, ``name/.zarray``, ``name/0.0.0``...)."""
    refs: dict[str, Any] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        ".zattrs": json.dumps(attrs),
    }
    for array in arrays:
        if array.group:
            refs[f"{array.group}/.zgroup"] = json.dumps({"zarr_format": 2})
        refs[f"{array.path}/.zarray"] = json.dumps(_v2_zarray(array.metadata))
        zattrs = dict(array.metadata.get("attributes") or {})
        zattrs["_ARRAY_DIMENSIONS"] = list(array.metadata["dimension_names"])
        refs[f"{array.path}/.zattrs"] = json.dumps(zattrs)
        manifest = array.manifest
        for key in manifest.keys():  # noqa: SIM118 (a method, not a dict)
            coords = parse_chunk_key(key, len(manifest.grid_shape))
            ref = manifest.get(coords) if coords is not None else None
            if coords is None or ref is None:
                continue
            refs[f"{array.path}/" + ".".join(str(c) for c in coords)] = reference(ref)
    return refs


def to_kerchunk(
    url: str | os.PathLike[str] | list[str],
    *,
    storage_options: StorageOptions = None,
    kind: Kind | str | None = None,
    zarr_format: int | None = None,
    keep_identifiers: bool = False,
    select: int | str | None = None,
) -> ReferenceSet:
    """A kerchunk / fsspec reference set (``{"version": 1, "refs": ...}``).

    Parameters
    ----------
    url : str, path or list
        A file, folder, glob or list of files.
    storage_options : mapping or callable, optional
        fsspec options (or a filesystem factory) for reading ``url``.
    kind : Kind or {"frames", "slide", "volume"}, optional
        ``"frames"`` (one file): its frames, as
        [`open_frames`][dicom_dask.images.instance.open_frames] gives them; ``"slide"`` (a
        tiled file, folder or list): the pyramid; ``"volume"`` (a series folder, glob or
        list, an enhanced file, one CT/MR slice): the volume, as
        [`open_volume`][dicom_dask.images.volume.open_volume] gives it. Default: as
        [`source_kind`][dicom_dask.images.sources.source_kind] decides, the rule every
        front end follows (a tiled file is a slide, an enhanced CT a volume).
    zarr_format : {2, 3}, optional
        ``2`` (the default for frames and volumes): named variables as kerchunk tools
        expect them (``frames`` or ``volume`` at the root; for a slide, a group per level
        ``"0"``, ``"1"``... holding ``image``), ``.zarray`` documents whose filter is the
        numcodecs codec ``dicom_dask.frame`` (plain native pixels need none), chunk keys
        ``name/0.0.0``. VirtualiZarr's ``KerchunkJSONParser``, xarray's ``kerchunk`` and
        ``zarr`` engines and fsspec's Parquet references (``LazyReferenceMapper``) read
        them. ``3`` (the default for slides): the zarr v3 documents of our stores, one
        array at the root for frames and volumes, the OME-Zarr 0.5 group for a slide.
    keep_identifiers : bool
        Keep the instance UIDs and the slide's Container Identifier in the attributes.
        By default they are replaced (see ``docs/cloud.md``, "Patient data"): the
        references carry no patient data. No DICOM header is written either way.
    select : int or str, optional
        Which slide or stack of a folder that holds several, as ``select`` of
        [`open_slide`][dicom_dask.images.slide.open_slide] and
        [`open_volume`][dicom_dask.images.volume.open_volume].

    Notes
    -----
    Plain zarr reads either form through fsspec's ``ReferenceFileSystem`` with dicom_dask
    installed (its codecs are registered through entry points). A frame split over
    several fragments is one reference covering its items (the codec strips the item
    headers); deflated datasets, which cannot be range-read, are carried inline.

    URLs are written without credentials (see ``docs/cloud.md``); the files read are
    listed with their size and identity under ``"dicom_dask_sources"`` (fsspec ignores
    the key), for [`check_references`][dicom_dask.integrations.kerchunk.check_references].
    """
    if zarr_format not in (None, 2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    kind, opened = _open(url, kind=kind, storage_options=storage_options, select=select)
    store = opened.store
    sources = _sources(kind, opened)
    if zarr_format is None:
        zarr_format = 3 if kind == "slide" else 2
    if zarr_format == 2:
        refs = v2_references(*virtual_arrays(store, kind=kind, keep_identifiers=keep_identifiers))
    else:
        docs = documents(store, keep_identifiers=keep_identifiers)
        refs = {key: json.dumps(value) for key, value in docs.items()}
        for path, manifest in store.manifests.items():
            refs.update(manifest.to_references(path))
    return reference_set(refs, sources=sources)
