"""dicom_dask: very large DICOM images as lazy dask arrays over a Zarr v3 store."""

from __future__ import annotations

from dicom_dask.api import Frames, open_frames, open_store, to_kerchunk
from dicom_dask.codecs import DicomFrameCodec
from dicom_dask.codecs import register as _register_codec
from dicom_dask.errors import DicomDaskError
from dicom_dask.facade import OpenSlide
from dicom_dask.frames.dicomweb import DicomWebLocation
from dicom_dask.frames.dicomweb import location as dicomweb
from dicom_dask.level import Level
from dicom_dask.manifest import ChunkManifest
from dicom_dask.patches import PatchSampler, tissue_mask
from dicom_dask.slide import Slide, list_slides, open_slide, open_tiled, to_ome_zarr
from dicom_dask.store import DicomStore
from dicom_dask.volume import Volume, list_series, open_volume

__all__ = [
    "ChunkManifest",
    "DicomDaskError",
    "DicomFrameCodec",
    "DicomStore",
    "DicomWebLocation",
    "Frames",
    "Level",
    "OpenSlide",
    "PatchSampler",
    "Slide",
    "Volume",
    "__version__",
    "dicomweb",
    "list_series",
    "list_slides",
    "open_frames",
    "open_slide",
    "open_store",
    "open_tiled",
    "open_volume",
    "tissue_mask",
    "to_kerchunk",
    "to_ome_zarr",
]

__version__ = "0.1.0"

_register_codec()
