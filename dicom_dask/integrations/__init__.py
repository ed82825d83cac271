"""Integrations: front ends over the image models.

In: [`Frames`][dicom_dask.images.instance.Frames], [`Slide`][dicom_dask.images.slide.Slide],
[`Volume`][dicom_dask.images.volume.Volume]. Out: kerchunk references, the xarray backend, the
napari reader (``napari.yaml``), the ``dicom-dask`` command line, the OpenSlide facade and the patch
sampler.
"""
