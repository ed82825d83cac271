"""Reference sets: the one builder of the kerchunk / fsspec documents dicom_dask writes,
and the version of each format they hold.

Frames, slide and volume references, index sidecars and series / slide indexes are all
``{"version": 1, "refs": {...}}`` with dicom_dask's own keys beside (fsspec's
``ReferenceFileSystem`` ignores them): see
[`ReferenceSet`][dicom_dask.types.ReferenceSet]. Each format's version is here once:

* [`REFERENCES_VERSION`][dicom_dask.chunks.references.REFERENCES_VERSION]: kerchunk's
  reference-set ``version``;
* [`INDEX_FORMAT`][dicom_dask.chunks.references.INDEX_FORMAT]: an index sidecar's
  ``"dicom_dask"`` entry and the ``"dicom_dask_sources"`` list;
* [`SLIDE_FORMAT`][dicom_dask.chunks.references.SLIDE_FORMAT]: ``"dicom_dask_slide"``;
* [`SERIES_FORMAT`][dicom_dask.chunks.references.SERIES_FORMAT]: ``"dicom_dask_series"``.

The OME-NGFF versions are in [`dicom_dask.images.ome`][dicom_dask.images.ome].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from dicom_dask.types import ReferenceSet, SeriesEntry, SlideEntry, SourcesEntry

__all__ = [
    "INDEX_FORMAT",
    "INDEX_KEY",
    "REFERENCES_VERSION",
    "SERIES_FORMAT",
    "SERIES_KEY",
    "SLIDE_FORMAT",
    "SLIDE_KEY",
    "SOURCES_KEY",
    "reference_set",
    "series_entry",
    "slide_entry",
]

#: The kerchunk / fsspec reference-set version written.
REFERENCES_VERSION: Final = 1
#: The index sidecar format written (``"dicom_dask"`` and ``"dicom_dask_sources"``; 2:
#: with the source's identity).
INDEX_FORMAT: Final = 2
#: The slide index format written (``"dicom_dask_slide"``).
SLIDE_FORMAT: Final = 1
#: The series index format written (``"dicom_dask_series"``).
SERIES_FORMAT: Final = 1

#: The top-level key of an index sidecar's header and frame table.
INDEX_KEY: Final = "dicom_dask"
#: The top-level key of a reference set that lists the files it reads.
SOURCES_KEY: Final = "dicom_dask_sources"
#: The top-level key of a slide index's instances.
SLIDE_KEY: Final = "dicom_dask_slide"
#: The top-level key of a series index's files.
SERIES_KEY: Final = "dicom_dask_series"


def reference_set(
    refs: Mapping[str, Any],
    *,
    index: Mapping[str, Any] | None = None,
    sources: SourcesEntry | None = None,
    slide: SlideEntry | None = None,
    series: SeriesEntry | None = None,
) -> ReferenceSet:
    """A reference set of ``refs`` (kept as given: the caller's dict, not a copy) with
    the dicom_dask entries that are not ``None``, in this order: ``"dicom_dask"``
    (``index``), ``"dicom_dask_sources"``, ``"dicom_dask_slide"``,
    ``"dicom_dask_series"``."""
    doc: dict[str, Any] = {"version": REFERENCES_VERSION, "refs": refs}
    for key, value in (
        (INDEX_KEY, index),
        (SOURCES_KEY, sources),
        (SLIDE_KEY, slide),
        (SERIES_KEY, series),
    ):
        if value is not None:
            doc[key] = value
    return cast(ReferenceSet, doc)


def slide_entry(instances: list[dict[str, Any]]) -> SlideEntry:
    """``"dicom_dask_slide"`` of a slide index."""
    return {"format": SLIDE_FORMAT, "instances": instances}


def series_entry(files: list[dict[str, Any]]) -> SeriesEntry:
    """``"dicom_dask_series"`` of a series index."""
    return {"format": SERIES_FORMAT, "files": files}
