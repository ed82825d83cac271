"""Kerchunk / fsspec reference sets of frames, slides and volumes."""

from __future__ import annotations

import os
from typing import Any

from dicom_dask.errors import NoImagesError
from dicom_dask.frames._io import StorageOptions
from dicom_dask.images.instance import open_frames
from dicom_dask.images.slide import open_slide
from dicom_dask.images.sources import is_collection
from dicom_dask.images.volume import open_volume

__all__ = ["to_kerchunk"]


def to_kerchunk(
    url: str | os.PathLike[str] | list[str],
    *,
    storage_options: StorageOptions = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """A kerchunk / fsspec reference set (``{"version": 1, "refs": ...}``).

    ``kind`` (default: guessed):

    * ``"frames"`` (one file): its frames array, as
    [`open_frames`][dicom_dask.images.instance.open_frames] gives it;
    * ``"slide"`` (a tiled file, folder or list): the slide's virtual OME-Zarr group;
    * ``"volume"`` (a series folder, glob or list, or an enhanced file): the volume
      array across files, as [`open_volume`][dicom_dask.images.volume.open_volume] gives it.

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
                return {"version": 1, "refs": slide.to_index()["refs"]}
            except NoImagesError:
                kind = "volume"
        else:
            kind = "frames"
    if kind == "frames":
        return open_frames(url, storage_options=storage_options).to_kerchunk()  # type: ignore[arg-type]
    if kind == "slide":
        slide = open_slide(url, storage_options=storage_options)
        return {"version": 1, "refs": slide.to_index()["refs"]}
    if kind == "volume":
        return open_volume(url, storage_options=storage_options).to_kerchunk()
    raise ValueError(f"kind must be 'frames', 'slide' or 'volume', got {kind!r}")
