"""Public types shared by every stage: what a user passes in and what index formats hold.

Import them from here in annotations: ``from dicom_dask.types import StorageOptions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypeAlias, TypedDict

import fsspec

__all__ = [
    "ReferenceSet",
    "SeriesEntry",
    "SlideEntry",
    "SourcesEntry",
    "StorageOptions",
]

#: fsspec options for every URL (``{"anon": True}``, ``{"key": ..., "secret": ...}``), or
#: a picklable zero-argument factory returning a ready filesystem (called where the read
#: happens, so credentials it looks up never travel in a pickled graph), or ``None`` for
#: fsspec's defaults.
StorageOptions: TypeAlias = Mapping[str, Any] | Callable[[], fsspec.AbstractFileSystem] | None


class SourcesEntry(TypedDict):
    """``"dicom_dask_sources"`` of a reference set: the files it reads, each with its
    ``url`` (without credentials), ``file_size`` and ``identity`` (``etag``,
    ``generation``, ``mtime``)."""

    format: int
    files: list[dict[str, Any]]


class SeriesEntry(TypedDict):
    """``"dicom_dask_series"`` of a series index: the index entry (``"dicom_dask"`` of
    a sidecar) of each file."""

    format: int
    files: list[dict[str, Any]]


class SlideEntry(TypedDict):
    """``"dicom_dask_slide"`` of a slide index: each instance's index entry and tile
    positions."""

    format: int
    instances: list[dict[str, Any]]


class ReferenceSet(TypedDict):
    """A kerchunk / fsspec reference set (``{"version": 1, "refs": {...}}``) as
    dicom_dask writes it: references, index sidecars and series / slide indexes.

    fsspec's ``ReferenceFileSystem`` reads ``version`` and ``refs`` and ignores the
    other keys: ``dicom_dask`` (an index sidecar's header and frame table),
    ``dicom_dask_sources``, ``dicom_dask_slide``, ``dicom_dask_series``. Built by
    `reference_set`.
    """

    version: int
    refs: dict[str, Any]
    dicom_dask: NotRequired[dict[str, Any]]
    dicom_dask_sources: NotRequired[SourcesEntry]
    dicom_dask_slide: NotRequired[SlideEntry]
    dicom_dask_series: NotRequired[SeriesEntry]
