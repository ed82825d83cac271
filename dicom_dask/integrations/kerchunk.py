"""Kerchunk / fsspec reference sets of frames, slides and volumes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dicom_dask.chunks.sidecar import SOURCES_KEY, check_sources
from dicom_dask.errors import NoImagesError
from dicom_dask.frames._io import StorageOptions
from dicom_dask.images.instance import open_frames
from dicom_dask.images.slide import open_slide
from dicom_dask.images.sources import is_collection
from dicom_dask.images.volume import open_volume

__all__ = ["check_references", "to_kerchunk"]


def _refs(doc: dict[str, Any]) -> dict[str, Any]:
    """A slide index cut down to its reference set (and the sources it reads)."""
    return {"version": 1, "refs": doc["refs"], SOURCES_KEY: doc[SOURCES_KEY]}


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


def to_kerchunk(
    url: str | os.PathLike[str] | list[str],
    *,
    storage_options: StorageOptions = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """A kerchunk / fsspec reference set (``{"version": 1, "refs": ...}``).

    URLs are written without credentials (see ``docs/cloud.md``); the files read are
    listed with their size and identity under ``"dicom_dask_sources"`` (fsspec ignores
    the key), for [`check_references`][dicom_dask.integrations.kerchunk.check_references].

    ``kind`` (default: guessed):

    * ``"frames"`` (one file): its frames array, as :func:`open_frames` gives it;
    * ``"slide"`` (a tiled file, folder or list): the slide's virtual OME-Zarr group;
    * ``"volume"`` (a series folder, glob or list, or an enhanced file): the volume
      array across files, as :func:`open_volume` gives it.

    Opened with fsspec's ``ReferenceFileSystem``, plain zarr reads the DICOM bytes
    through the registered ``dicom_dask.frame`` codec. A frame split over several
    fragments is one reference covering its items (the codec strips the item
    headers); deflated datasets, which cannot be range-read, are carried inline.
    References are JSON: fsspec's Parquet reference format (``LazyReferenceMapper``)
    describes zarr v2 arrays only (it sizes chunks from ``.zarray``), and these arrays
    are zarr v3.
    """
    if kind is None:
        if is_collection(url):
            try:
                slide = open_slide(url, storage_options=storage_options)
                return _refs(slide.to_index())
            except NoImagesError:
                kind = "volume"
        else:
            kind = "frames"
    if kind == "frames":
        return open_frames(url, storage_options=storage_options).to_kerchunk()  # type: ignore[arg-type]
    if kind == "slide":
        slide = open_slide(url, storage_options=storage_options)
        return _refs(slide.to_index())
    if kind == "volume":
        return open_volume(url, storage_options=storage_options).to_kerchunk()
    raise ValueError(f"kind must be 'frames', 'slide' or 'volume', got {kind!r}")
