"""dicom_dask: very large DICOM images as lazy dask arrays over a Zarr v3 store.

The package's folders are its data flow, each importing only from the ones before it: ``frames``
(bytes) -> ``chunks`` (zarr) -> ``images`` (slides, volumes, dask) -> ``integrations`` (xarray,
napari, CLI, OpenSlide facade, patches, kerchunk). ``testing`` holds the synthetic writers and
loopback servers used by the tests, benchmarks and demo.
"""

from __future__ import annotations

from dicom_dask import config
from dicom_dask.api import (
    Frames,
    Kind,
    catalog,
    list_series,
    list_slides,
    open_entry,
    open_frames,
    open_slide,
    open_source,
    open_store,
    open_tiled,
    open_volume,
    source_kind,
    tissue_mask,
    to_dicom_pmap,
    to_dicom_seg,
    to_dicom_series,
    to_dicom_slide,
    to_kerchunk,
    to_ome_zarr,
    zarr_settings,
)
from dicom_dask.chunks.codec import DicomFrameCodec
from dicom_dask.chunks.codec import register as _register_codec
from dicom_dask.chunks.manifest import ChunkManifest
from dicom_dask.chunks.numcodec import register as _register_numcodec
from dicom_dask.chunks.pipeline import register as _register_pipeline
from dicom_dask.chunks.store import DicomStore
from dicom_dask.errors import DicomDaskError
from dicom_dask.frames.dicomweb import DicomWebLocation
from dicom_dask.frames.dicomweb import location as dicomweb
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.facade import OpenSlide
from dicom_dask.integrations.patches import PatchSampler

__all__ = [
    "config",
    "ChunkManifest",
    "DicomDaskError",
    "DicomFrameCodec",
    "DicomStore",
    "DicomWebLocation",
    "Frames",
    "Kind",
    "Level",
    "OpenSlide",
    "PatchSampler",
    "Slide",
    "Volume",
    "__version__",
    "catalog",
    "dicomweb",
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

__version__ = "0.1.0"

# the codecs and the codec pipeline, also where the entry points are not installed (a source
# checkout)
_register_codec()
_register_numcodec()
_register_pipeline()
