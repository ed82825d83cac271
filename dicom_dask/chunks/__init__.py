"""Chunks: byte ranges of frames become the chunks of zarr v3 arrays.

In: a [`FrameIndex`][dicom_dask.frames.FrameIndex] (header + byte ranges) from
[`dicom_dask.frames`][]. Out: an immutable
[`ChunkManifest`][dicom_dask.chunks.manifest.ChunkManifest], the read-only
[`DicomStore`][dicom_dask.chunks.store.DicomStore], the registered ``dicom_dask.frame`` codec and
its decoders, the batched manifest reader, zarr metadata builders and index sidecars. Nothing here
imports dask, xarray or napari.
"""
