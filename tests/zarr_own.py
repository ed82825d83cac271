"""zarr's own codec pipeline under a name of its own, for tests that compare with it.

dicom_dask selects its pipeline when zarr opens a DICOM-backed array while the
configuration names zarr's default pipeline (see ``dicom_dask.chunks.pipeline``), so
``zarr.config.set({})`` no longer means zarr's own pipeline for such arrays. This subclass
changes nothing; naming it chooses zarr's ``BatchedCodecPipeline`` explicitly.
"""

from __future__ import annotations

from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.registry import register_pipeline


class ZarrOwnPipeline(BatchedCodecPipeline):
    """zarr's ``BatchedCodecPipeline``, unchanged."""


register_pipeline(ZarrOwnPipeline)

#: zarr settings that choose zarr's own pipeline.
ZARR_OWN = {"codec_pipeline.path": f"{ZarrOwnPipeline.__module__}.ZarrOwnPipeline"}
