"""The JPEG-LS pydicom plugin: CharLS through imagecodecs (kept for its import path).

The plugin now lives in [`fastcodecs`][dicom_dask.chunks.fastcodecs], which also
decodes JPEG 2000, HTJ2K, JPEG lossless and RLE. pydicom's own JPEG-LS plugins
(pylibjpeg's libjpeg, pyjpegls) hold the GIL, and libjpeg is about 2.5x slower than
CharLS; imagecodecs' CharLS releases it. JPEG-LS decoding is exact integer
arithmetic, lossless and near-lossless alike: every conforming decoder gives the
same samples.
"""

from __future__ import annotations

from pydicom import uid

from dicom_dask.chunks.fastcodecs import _decode_frame
from dicom_dask.chunks.fastcodecs import is_available as _is_available

__all__ = ["DECODER_DEPENDENCIES", "is_available"]

DECODER_DEPENDENCIES = {
    uid.JPEGLSLossless: ("numpy", "imagecodecs"),
    uid.JPEGLSNearLossless: ("numpy", "imagecodecs"),
}


def is_available(transfer_syntax: str) -> bool:
    """Whether imagecodecs (with its JPEG-LS codec) is installed."""
    return transfer_syntax in DECODER_DEPENDENCIES and _is_available(transfer_syntax)


_ = _decode_frame  # re-exported: pydicom plugins are named (module, function)
