"""A pydicom decoding plugin for JPEG-LS: CharLS through imagecodecs.

pydicom's own JPEG-LS plugins (pylibjpeg's libjpeg, pyjpegls) hold the GIL, and libjpeg
is about 2.5x slower than CharLS; imagecodecs' CharLS releases it, so frames decode in
parallel threads. Registered with pydicom's JPEG-LS decoders by
`dicom_dask.chunks.decoders` under the label ``"imagecodecs"``, so that pydicom's
own processing (sign correction, unused bits, colour) applies to its output exactly
as to any other plugin's. JPEG-LS decoding is exact integer arithmetic, lossless
and near-lossless alike: every conforming decoder gives the same samples.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pydicom import uid

DECODER_DEPENDENCIES = {
    uid.JPEGLSLossless: ("numpy", "imagecodecs"),
    uid.JPEGLSNearLossless: ("numpy", "imagecodecs"),
}


def is_available(transfer_syntax: str) -> bool:
    """Whether imagecodecs (with its JPEG-LS codec) is installed."""
    if transfer_syntax not in DECODER_DEPENDENCIES:
        return False
    if importlib.util.find_spec("imagecodecs") is None:
        return False
    import imagecodecs

    return bool(getattr(imagecodecs.JPEGLS, "available", False))


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """The decoded samples of one JPEG-LS codestream, colour by pixel."""
    import imagecodecs

    arr = imagecodecs.jpegls_decode(src)
    if arr.ndim == 3:  # imagecodecs returns (rows, columns, samples) for every interleave
        runner.set_option("planar_configuration", 0)
    runner.set_option("bits_allocated", 8 * arr.dtype.itemsize)
    return arr.tobytes()
