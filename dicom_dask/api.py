"""The public functions, gathered from the stages that define them.

``dicom_dask`` re-exports everything here; import from ``dicom_dask`` in user code.

* [`open_frames`][dicom_dask.images.instance.open_frames] and
  [`open_store`][dicom_dask.images.instance.open_store]: the frames of one instance;
* [`open_slide`][dicom_dask.images.slide.open_slide],
  [`open_tiled`][dicom_dask.images.slide.open_tiled] and
  [`list_slides`][dicom_dask.images.slide.list_slides]: whole-slide pyramids;
* [`to_ome_zarr`][dicom_dask.integrations.ome_zarr.to_ome_zarr]: a slide, volume or
  computed array to an OME-Zarr pyramid;
* [`open_source`][dicom_dask.images.sources.open_source] and
  [`source_kind`][dicom_dask.images.sources.source_kind] (a [`Kind`][dicom_dask.enums.Kind]):
  any source as its frames, a volume or a slide, by the one rule every front end follows;
* [`open_volume`][dicom_dask.images.volume.open_volume] and
  [`list_series`][dicom_dask.images.volume.list_series]: CT/MR volumes;
* [`catalog`][dicom_dask.integrations.catalog.catalog] and
  [`open_entry`][dicom_dask.images.cohort.open_entry]: a table of every volume and slide
  under a prefix, and any of its rows (or of a listing's entries) opened with no header read;
* [`zarr_settings`][dicom_dask.chunks.pipeline.zarr_settings]: zarr settings for the fastest reads;
* [`to_kerchunk`][dicom_dask.integrations.kerchunk.to_kerchunk]: kerchunk references;
* [`tissue_mask`][dicom_dask.integrations.patches.tissue_mask]: a tissue mask of a slide;
* [`to_dicom_slide`][dicom_dask.integrations.writers.slide.to_dicom_slide] and
  [`to_dicom_seg`][dicom_dask.integrations.writers.seg.to_dicom_seg],
  [`to_dicom_pmap`][dicom_dask.integrations.writers.pmap.to_dicom_pmap] and
  [`to_dicom_series`][dicom_dask.integrations.writers.series.to_dicom_series]: write DICOM.
"""

from __future__ import annotations

from dicom_dask.chunks.pipeline import zarr_settings
from dicom_dask.enums import Kind
from dicom_dask.images.cohort import open_entry
from dicom_dask.images.instance import Frames, open_frames, open_store
from dicom_dask.images.slide import list_slides, open_slide, open_tiled
from dicom_dask.images.sources import open_source, source_kind
from dicom_dask.images.volume import list_series, open_volume
from dicom_dask.integrations.catalog import catalog
from dicom_dask.integrations.kerchunk import to_kerchunk
from dicom_dask.integrations.ome_zarr import to_ome_zarr
from dicom_dask.integrations.patches import tissue_mask
from dicom_dask.integrations.writers import (
    to_dicom_pmap,
    to_dicom_seg,
    to_dicom_series,
    to_dicom_slide,
)

__all__ = [
    "Frames",
    "Kind",
    "catalog",
    "list_series",
    "list_slides",
    "open_entry",
    "open_frames",
    "open_slide",
    "open_source",
    "open_store",
    "open_tiled",
    "open_volume",
    "source_kind",
    "tissue_mask",
    "to_dicom_pmap",
    "to_dicom_seg",
    "to_dicom_series",
    "to_dicom_slide",
    "to_kerchunk",
    "to_ome_zarr",
    "zarr_settings",
]
