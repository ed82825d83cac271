"""Listed entries: one volume stack or slide, as a ``dict`` that keeps its parsed headers.

[`list_series`][dicom_dask.images.volume.list_series],
[`list_slides`][dicom_dask.images.slide.list_slides] and
[`catalog`][dicom_dask.integrations.catalog.catalog] describe what a folder or bucket holds
with one entry per volume stack or slide. Each entry says what it is (``kind``) and which
files make it (``urls``), and an [`Entry`][dicom_dask.images.entries.Entry] also keeps the
headers read to list it, so that [`open_entry`][dicom_dask.images.cohort.open_entry] opens
it without reading them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["KINDS", "Entry"]

#: What an entry holds. ``"volume"``: a stack of slices
#: ([`open_volume`][dicom_dask.images.volume.open_volume]); ``"slide"``: a pyramid
#: ([`open_slide`][dicom_dask.images.slide.open_slide]); ``"segmentation"``: a tiled
#: Segmentation in a series of its own (opened as a slide of segments); ``"label"``,
#: ``"overview"``, ``"thumbnail"``: associated images with no pyramid to join (opened as
#: one [`Level`][dicom_dask.images.level.Level] with
#: [`open_tiled`][dicom_dask.images.slide.open_tiled]).
KINDS = ("volume", "slide", "segmentation", "label", "overview", "thumbnail")


class Entry(dict[str, Any]):
    """One listed volume stack or slide: its description (a ``dict``), plus the parsed
    instances it was described from.

    Compares and serialises as the plain ``dict`` it is; ``parts`` (the
    `FrameIndex` of each file of a volume, the
    `TiledImage` of each instance of a slide) is
    what lets [`open_entry`][dicom_dask.images.cohort.open_entry] open it with no request.
    """

    parts: tuple[Any, ...]

    def __init__(self, described: Mapping[str, Any], parts: Iterable[Any] = ()) -> None:
        super().__init__(described)
        self.parts = tuple(parts)
