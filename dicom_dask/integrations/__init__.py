"""Integrations: front ends over the image models.

In: [`Frames`][dicom_dask.images.instance.Frames], [`Slide`][dicom_dask.images.slide.Slide],
[`Volume`][dicom_dask.images.volume.Volume]. Out: kerchunk references, the xarray backend, the
napari reader (``napari.yaml``), the ``dicom-dask`` command line, the OpenSlide facade and the patch
sampler.
"""

import sys as _sys

from dicom_dask.integrations import virtualizarr as _virtualizarr

# ``from dicom_dask.virtualizarr import DicomParser``: the parser lives here, in its stage, and
# is also importable under the short name (as os.path is); VirtualiZarr itself is imported
# only when the parser runs.
_sys.modules.setdefault("dicom_dask.virtualizarr", _virtualizarr)
