"""Frame decoders through imagecodecs: C libraries that release the GIL.

pydicom's own plugins for JPEG 2000, HTJ2K, RLE and JPEG lossless (pylibjpeg's
OpenJPEG, RLE and libjpeg) hold the GIL, so frames do not decode in parallel
threads. imagecodecs wraps the same or faster libraries and releases it:

* ``imagecodecs:jpeg2k``: JPEG 2000 (lossless and lossy) and HTJ2K through OpenJPEG,
  the library pylibjpeg-openjpeg wraps: the same samples on every real J2K file;
* ``imagecodecs:htj2k``: HTJ2K lossless (reversible codestreams) through OpenJPH, about
  2x faster than OpenJPEG; reversible decoding is exact;
* ``imagecodecs:jpeg8``: JPEG lossless (processes 14 and 14 SV1) through libjpeg-turbo 3,
  exact;
* ``imagecodecs:packbits``: RLE Lossless (8, 16, 32 bits allocated), each segment
  through imagecodecs' PackBits decoder, exact;
* ``pydicom:imagecodecs``: JPEG-LS through CharLS, exact.

Each backend decodes in two ways, giving the same array:

* [`fast_decode`][dicom_dask.chunks.fastcodecs.fast_decode]: the library's output
  is pydicom's result as it is (no sign or colour correction to make, unused high
  bits cleared or sign-extended as pydicom's ``_correct_unused_bits`` does), so the
  frame skips pydicom's per-frame set-up (~0.2 ms with the GIL held: as long as an
  RLE or HTJ2K tile takes to decode);
* otherwise pydicom's pipeline with [`_decode_frame`][dicom_dask.chunks.fastcodecs._decode_frame]
  registered as its ``"imagecodecs"`` plugin, so pydicom's own sign correction,
  unused-bit masking and colour conversion apply.

OpenJPH is used only for reversible (lossless) codestreams: on the irreversible
(lossy) HTJ2K test file it differs from OpenJPEG (and pydicom) in 0.14 % of the
samples, by 1 in half of them and by 255 in the other half (it wraps saturated
samples around instead of clamping), so lossy HTJ2K decodes with OpenJPEG.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import struct
from typing import Any, cast

import numpy as np
from pydicom import uid as _uid

from dicom_dask.compat import rle_decode_frame

__all__ = [
    "DECODER_DEPENDENCIES",
    "FAST_BACKENDS",
    "fast_backends",
    "fast_decode",
    "is_available",
]

J2K_SYNTAXES = frozenset({_uid.JPEG2000Lossless, _uid.JPEG2000})
HTJ2K_LOSSLESS = frozenset({_uid.HTJ2KLossless, _uid.HTJ2KLosslessRPCL})
HTJ2K_SYNTAXES = HTJ2K_LOSSLESS | {_uid.HTJ2K}
LOSSLESS_JPEG = frozenset({_uid.JPEGLossless, _uid.JPEGLosslessSV1})
JPEGLS_SYNTAXES = frozenset({_uid.JPEGLSLossless, _uid.JPEGLSNearLossless})

#: backend -> (imagecodecs codec name, transfer syntaxes it decodes)
FAST_BACKENDS: dict[str, tuple[str, frozenset[str]]] = {
    "imagecodecs:htj2k": ("HTJ2K", HTJ2K_SYNTAXES),
    "imagecodecs:jpeg2k": ("JPEG2K", J2K_SYNTAXES | HTJ2K_SYNTAXES),
    "imagecodecs:jpeg8": ("JPEG8", LOSSLESS_JPEG),
    "imagecodecs:packbits": ("PACKBITS", frozenset({_uid.RLELossless})),
}

#: Transfer syntaxes the ``"imagecodecs"`` pydicom plugin of this module decodes.
DECODER_DEPENDENCIES = {
    tsyntax: ("numpy", "imagecodecs")
    for tsyntax in (
        *J2K_SYNTAXES,
        *HTJ2K_SYNTAXES,
        *LOSSLESS_JPEG,
        *JPEGLS_SYNTAXES,
        _uid.RLELossless,
    )
}


@functools.cache
def _codec_available(name: str) -> bool:
    if importlib.util.find_spec("imagecodecs") is None:
        return False
    import imagecodecs

    return bool(getattr(getattr(imagecodecs, name, None), "available", False))


def is_available(transfer_syntax: str) -> bool:
    """Whether imagecodecs (with the codec for ``transfer_syntax``) is installed."""
    if transfer_syntax not in DECODER_DEPENDENCIES:
        return False
    return _codec_available(_default_codec(transfer_syntax).upper())


def fast_backends(tsyntax: str, *, bits_allocated: int) -> list[str]:
    """The imagecodecs backends able to decode ``tsyntax`` here, fastest first."""
    if tsyntax == _uid.RLELossless and bits_allocated not in (8, 16, 32):
        return []
    if tsyntax in LOSSLESS_JPEG and bits_allocated not in (8, 16):
        return []
    order = ["imagecodecs:htj2k", "imagecodecs:jpeg2k"]
    if tsyntax == _uid.HTJ2K:  # lossy: OpenJPH wraps saturated samples (module docstring)
        order.reverse()
    order += ["imagecodecs:jpeg8", "imagecodecs:packbits"]
    return [
        b for b in order if tsyntax in FAST_BACKENDS[b][1] and _codec_available(FAST_BACKENDS[b][0])
    ]


def _default_codec(tsyntax: str) -> str:
    if tsyntax in J2K_SYNTAXES or tsyntax in HTJ2K_SYNTAXES:
        return "jpeg2k"
    if tsyntax in LOSSLESS_JPEG:
        return "jpeg8"
    if tsyntax in JPEGLS_SYNTAXES:
        return "jpegls"
    return "packbits"


# -- codestream headers ---------------------------------------------------------


def _j2k_header(data: bytes | memoryview) -> tuple[list[int], bool] | None:
    """``(Ssiz of every component, reversible)`` of a raw J2K codestream, else ``None``.

    ``reversible`` is the main header's COD wavelet (5-3); ``False`` when a COC
    marker may override it per component.
    """
    head = bytes(data[:4096])
    if head[:4] != b"\xff\x4f\xff\x51" or len(head) < 42:
        return None
    (csiz,) = struct.unpack(">H", head[40:42])
    ssiz = list(head[42 : 42 + 3 * csiz : 3])
    if len(ssiz) != csiz:
        return None
    pos, reversible = 2, False
    while pos + 4 <= len(head):
        marker = head[pos : pos + 2]
        if marker in (b"\xff\x90", b"\xff\x93"):  # SOT, SOD: end of the main header
            return ssiz, reversible
        if marker == b"\xff\x53":  # COC: per-component coding style
            return ssiz, False
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker == b"\xff\x52" and pos + 14 <= len(head):  # COD
            reversible = head[pos + 13] == 1
        pos += 2 + length
    return ssiz, False


#: JPEG start-of-frame markers: SOF3 (lossless) and SOF55 (JPEG-LS).
_SOF = frozenset({0xC3, 0xF7})


def _jpeg_header(data: bytes) -> tuple[int, int, bool] | None:
    """``(precision, components, keeps RGB)`` of a lossless JPEG or JPEG-LS stream.

    ``keeps RGB``: pydicom leaves an ``RGB`` photometric interpretation as it is
    (component IDs "RGB", or no JFIF APP0 segment; see pydicom's
    ``DecodeRunner._conform_jpg_colorspace``).
    """
    head = data[:8192]
    if head[:2] != b"\xff\xd8":
        return None
    pos, jfif = 2, False
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        segment = head[pos + 4 : pos + 2 + length]
        if 0xE0 <= marker <= 0xEF and segment.startswith(b"JFIF"):
            jfif = True
        if marker in _SOF and len(segment) >= 6:
            precision, ncomp = segment[0], segment[5]
            ids = list(segment[6 : 6 + 3 * ncomp : 3])
            rgb_ids = ids in ([82, 71, 66], [114, 103, 98])
            return precision, ncomp, rgb_ids or not jfif
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


# -- decoding ---------------------------------------------------------------------


def _expected_dtype(cfg: dict[str, Any]) -> np.dtype[Any] | None:
    bits = cfg["bits_allocated"]
    if bits not in (8, 16, 32) or cfg.get("pixel_keyword", "PixelData") != "PixelData":
        return None
    return np.dtype(f"{'iu'[cfg['pixel_representation'] == 0]}{bits // 8}")


def _no_colour_change(cfg: dict[str, Any]) -> bool:
    """pydicom converts no colour (it does for YBR_FULL/YBR_FULL_422 with as_rgb)."""
    pi = cfg["photometric_interpretation"]
    return cfg["samples_per_pixel"] == 1 or not (
        cfg["as_rgb"] and pi in ("YBR_FULL", "YBR_FULL_422")
    )


def _finish(arr: np.ndarray, cfg: dict[str, Any], dtype: np.dtype[Any]) -> np.ndarray | None:
    """``arr`` viewed as ``dtype`` with the unused high bits corrected, or ``None``."""
    if arr.dtype.itemsize != dtype.itemsize or arr.dtype.kind not in "ui":
        return None
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")
    arr = arr.view(dtype.newbyteorder("="))
    shift = cfg["bits_allocated"] - cfg["bits_stored"]
    if shift > 0:  # pydicom's _correct_unused_bits
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def _decode_j2k(data: bytes, codec: str, reversible: bool) -> np.ndarray:
    import imagecodecs

    if codec == "htj2k" and reversible:
        return np.asarray(imagecodecs.htj2k_decode(data))
    return np.asarray(imagecodecs.jpeg2k_decode(data, numthreads=1))


def _fast_j2k(data: bytes, cfg: dict[str, Any], codec: str) -> np.ndarray | None:
    header = _j2k_header(data)
    dtype = _expected_dtype(cfg)
    if header is None or dtype is None or not _no_colour_change(cfg):
        return None
    ssiz, reversible = header
    samples = cfg["samples_per_pixel"]
    want = (cfg["bits_stored"] - 1) | (0x80 if cfg["pixel_representation"] else 0)
    if len(ssiz) != samples or any(s != want for s in ssiz):
        return None  # precision or signedness differ from the dataset: pydicom corrects
    if samples > 1 and cfg["planar_configuration"] != 0:
        return None
    arr = _decode_j2k(data, codec, reversible)
    if arr.dtype != dtype:
        return None
    return arr[None]


def _fast_jpeg(data: bytes, cfg: dict[str, Any], codec: str) -> np.ndarray | None:
    import imagecodecs

    header = _jpeg_header(data)
    dtype = _expected_dtype(cfg)
    samples = cfg["samples_per_pixel"]
    if header is None or dtype is None:
        return None
    precision, ncomp, keeps_rgb = header
    if ncomp != samples or precision > cfg["bits_allocated"]:
        return None
    if samples > 1:
        if not keeps_rgb or cfg["photometric_interpretation"] != "RGB":
            return None  # pydicom may relabel or convert the colour space
        if codec == "jpegls":
            arr = imagecodecs.jpegls_decode(data)
        else:
            arr = imagecodecs.jpeg8_decode(data, colorspace="RGB", outcolorspace="RGB")
    elif codec == "jpegls":
        if cfg["pixel_representation"]:
            return None  # pydicom's JPEG-LS sign correction
        arr = imagecodecs.jpegls_decode(data)
    else:
        arr = imagecodecs.jpeg8_decode(data)
    out = _finish(np.asarray(arr), cfg, dtype)
    return None if out is None else out[None]


def _rle_planes(
    data: bytes | memoryview, cfg: dict[str, Any], *, planar: bool
) -> np.ndarray | None:
    """The decoded segments as little-endian samples, ``(pixels, samples, bytes)``
    (``planar``: ``(samples, pixels, bytes)``), or ``None`` when a header or segment
    is not as expected. Each segment is written once, straight to its place."""
    import imagecodecs

    if len(data) < 64:
        return None
    header = struct.unpack("<16L", data[:64])
    nbytes = cfg["bits_allocated"] // 8
    samples = cfg["samples_per_pixel"]
    nseg = samples * nbytes
    if header[0] != nseg or nseg > 15:
        return None
    offsets = [*header[1 : 1 + nseg], len(data)]
    if offsets[0] != 64 or any(b < a for a, b in itertools.pairwise(offsets)):
        return None
    npix = cfg["rows"] * cfg["columns"]
    out = np.empty((samples, npix, nbytes) if planar else (npix, samples, nbytes), np.uint8)
    for i in range(nseg):
        try:
            segment = imagecodecs.packbits_decode(cast(bytes, data[offsets[i] : offsets[i + 1]]))
        except (imagecodecs.PackbitsError, RuntimeError, ValueError):  # pydicom: more lenient
            return None
        if len(segment) != npix:
            return None
        sample, byte = divmod(i, nbytes)  # segments are most significant byte first
        column = np.frombuffer(segment, dtype=np.uint8)
        if planar:
            out[sample, :, nbytes - 1 - byte] = column
        else:
            out[:, sample, nbytes - 1 - byte] = column
    return out


def _fast_rle(data: bytes | memoryview, cfg: dict[str, Any]) -> np.ndarray | None:
    dtype = _expected_dtype(cfg)
    if dtype is None or not _no_colour_change(cfg):
        return None
    interleaved = _rle_planes(data, cfg, planar=False)
    if interleaved is None:
        return None
    samples = cfg["samples_per_pixel"]
    arr = interleaved.reshape(-1).view(dtype.newbyteorder("<"))
    if not arr.dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    shape = (cfg["rows"], cfg["columns"], *((samples,) if samples > 1 else ()))
    result = _finish(arr.reshape(shape), cfg, dtype)
    return None if result is None else result[None]


def fast_decode(data: bytes | memoryview, cfg: dict[str, Any], codec: str) -> np.ndarray | None:
    """Decode one frame with imagecodecs' ``codec`` when pydicom would change nothing.

    Returns ``(1, rows, columns[, samples])`` equal to what pydicom's pipeline gives
    with this module's plugin, or ``None`` when that pipeline would correct signs,
    precisions or colours (the caller then runs it).
    """
    if codec == "packbits":  # segments are decoded from views: no copy of the frame
        return _fast_rle(data, cfg)
    if not isinstance(data, bytes):
        data = bytes(data)
    if codec in ("jpeg2k", "htj2k"):
        return _fast_j2k(data, cfg, codec)
    if codec in ("jpeg8", "jpegls"):
        return _fast_jpeg(data, cfg, codec)
    raise ValueError(f"unknown imagecodecs codec {codec!r}")


# -- the pydicom plugin ---------------------------------------------------------------


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """pydicom decoding plugin: one frame's samples, as pylibjpeg's plugins give them.

    The imagecodecs codec comes from the runner option ``imagecodecs_codec`` (set
    by [`decode_chunk`][dicom_dask.chunks.decoders.decode_chunk]), else the default
    for the transfer syntax (OpenJPEG for all of JPEG 2000 and HTJ2K).
    """
    import imagecodecs

    tsyntax = runner.transfer_syntax
    codec = runner.get_option("imagecodecs_codec", None) or _default_codec(tsyntax)
    if tsyntax in J2K_SYNTAXES or tsyntax in HTJ2K_SYNTAXES:
        header = _j2k_header(src)
        arr = _decode_j2k(src, codec, header is not None and header[1])
        # as pylibjpeg-openjpeg: YBR_ICT/YBR_RCT come out RGB, the container follows
        # the codestream's precision
        if runner.photometric_interpretation in ("YBR_ICT", "YBR_RCT"):
            runner.set_option("photometric_interpretation", "RGB")
        runner.set_option("bits_allocated", 8 * arr.dtype.itemsize)
        return arr.tobytes()
    if tsyntax in JPEGLS_SYNTAXES:
        arr = np.asarray(imagecodecs.jpegls_decode(src))
        if arr.ndim == 3:  # imagecodecs returns (rows, columns, samples) for every interleave
            runner.set_option("planar_configuration", 0)
        runner.set_option("bits_allocated", 8 * arr.dtype.itemsize)
        return arr.tobytes()
    if tsyntax in LOSSLESS_JPEG:
        if runner.samples_per_pixel > 1:  # no colour transform, as libjpeg's lossless mode
            arr = imagecodecs.jpeg8_decode(src, colorspace="RGB", outcolorspace="RGB")
        else:
            arr = imagecodecs.jpeg8_decode(src)
        return np.asarray(arr).tobytes()
    if tsyntax == _uid.RLELossless:
        cfg = {
            "rows": runner.rows,
            "columns": runner.columns,
            "samples_per_pixel": runner.samples_per_pixel,
            "bits_allocated": runner.bits_allocated,
        }
        planes = _rle_planes(src, cfg, planar=True)
        if planes is None:  # pydicom's own RLE decoder: its result, or its error
            return bytes(rle_decode_frame(src, runner))
        # planar configuration 1, little-endian samples, as pylibjpeg-rle gives them
        runner.set_option("planar_configuration", 1)
        return planes.tobytes()
    raise ValueError(f"imagecodecs plugin: unsupported transfer syntax {tsyntax}")
