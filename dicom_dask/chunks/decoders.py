"""Frame decoders: one function per backend, chosen per transfer syntax.

Every backend turns the encoded bytes of one chunk (one frame, or ``frames``
native 1-bit frames) into an array of shape ``(frames, rows, columns[, samples])``
with the dtype pydicom's ``pixel_array`` gives. The ``pydicom`` backend calls
pydicom's own decoders (with the plugin pinned) so that its output is identical
to ``Dataset.pixel_array``; ``imagecodecs`` uses libjpeg-turbo, which releases the
GIL and is ~5x faster for JPEG baseline but rounds differently (|diff| <= a few).
The ``imagecodecs:*`` backends of [`fastcodecs`][dicom_dask.chunks.fastcodecs]
(JPEG 2000, HTJ2K, JPEG lossless, RLE) release the GIL and give pydicom's samples.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from pydicom import uid as _uid
from pydicom.pixels import get_decoder

from dicom_dask.chunks.fastcodecs import (
    DECODER_DEPENDENCIES as _IMAGECODECS_PLUGIN_SYNTAXES,
)
from dicom_dask.chunks.fastcodecs import (
    JPEGLS_SYNTAXES,
    fast_backends,
    fast_decode,
)
from dicom_dask.compat import jpeg_parameters, rle_decode_segment
from dicom_dask.enums import (
    DEFLATED_FRAME_SYNTAX,
    ITEM_TAG,
    NATIVE_SYNTAXES,
    SEQUENCE_DELIMITER,
)
from dicom_dask.errors import CorruptFrameError, CroppedFrameError, MissingDecoderError

__all__ = [
    "available_backends",
    "correct_unused_bits",
    "decode_chunk",
    "masked_native",
    "select_backend",
    "unwrap_items",
]

_IMAGECODECS_SYNTAXES = frozenset({_uid.JPEGBaseline8Bit, _uid.JPEGExtended12Bit})
_J2K_FAMILY = frozenset(_uid.JPEG2000TransferSyntaxes)  # HTJ2K included


def unwrap_items(data: bytes | memoryview) -> bytes | memoryview:
    """Return the concatenated values of the DICOM items in ``data``.

    Bytes that do not start with an item tag (FFFE,E000) are returned unchanged:
    no supported codestream (JPEG, JPEG-LS, JPEG 2000, RLE, deflate) can start so.
    """
    view = memoryview(data)
    if bytes(view[:4]) != ITEM_TAG:
        return data
    parts = []
    pos, size = 0, len(view)
    while pos + 8 <= size:
        tag = bytes(view[pos : pos + 4])
        (length,) = struct.unpack("<L", view[pos + 4 : pos + 8])
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM_TAG:
            raise CorruptFrameError(
                f"expected an item tag (FFFE,E000) at byte {pos} of the frame's range, "
                f"found {tag.hex()}"
            )
        if pos + 8 + length > size:
            raise CorruptFrameError(
                f"the item at byte {pos} of the frame's range claims {length} bytes, "
                f"but only {size - pos - 8} follow"
            )
        parts.append(view[pos + 8 : pos + 8 + length])
        pos += 8 + length
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


#: pydicom plugins by preference: CharLS through imagecodecs releases the GIL for
#: JPEG-LS (registered below), pyjpegls is CharLS holding it, libjpeg is ~2.5x slower.
_PREFERRED_PLUGINS: dict[str, tuple[str, ...]] = {
    _uid.JPEGLSLossless: ("imagecodecs", "pyjpegls", "pylibjpeg", "gdcm"),
    _uid.JPEGLSNearLossless: ("imagecodecs", "pyjpegls", "pylibjpeg", "gdcm"),
}


@functools.cache
def _register_plugins() -> None:
    """Add [`fastcodecs`][dicom_dask.chunks.fastcodecs] to pydicom's decoders as the
    ``"imagecodecs"`` plugin of JPEG-LS, JPEG 2000, HTJ2K, JPEG lossless and RLE (once
    per process, when such a backend is first chosen or used: not at import)."""
    for tsyntax in _IMAGECODECS_PLUGIN_SYNTAXES:
        decoder = get_decoder(tsyntax)
        if "imagecodecs" not in decoder.available_plugins:
            with contextlib.suppress(ValueError):  # already known (as unavailable)
                decoder.add_plugin("imagecodecs", ("dicom_dask.chunks.fastcodecs", "_decode_frame"))


@functools.cache
def _pydicom_plugin(tsyntax: str) -> str:
    if tsyntax in _PREFERRED_PLUGINS:
        _register_plugins()
    decoder = get_decoder(tsyntax)
    plugins = list(decoder.available_plugins)
    if not plugins:
        missing = "; ".join(str(m) for m in decoder.missing_dependencies)
        raise MissingDecoderError(
            f"no installed package decodes transfer syntax {tsyntax} "
            f"({_uid.UID(tsyntax).name}); install pylibjpeg, pylibjpeg-libjpeg, "
            f"pylibjpeg-openjpeg and pylibjpeg-rle (pip install dicom_dask installs them). "
            f"pydicom reports: {missing}"
        )
    default = ("pylibjpeg", "pyjpegls", "pydicom", "pillow", "gdcm")
    for preferred in _PREFERRED_PLUGINS.get(tsyntax, default):
        if preferred in plugins:
            return preferred
    return plugins[0]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backends(tsyntax: str, *, bits_allocated: int = 8) -> list[str]:
    """The backends able to decode ``tsyntax`` here, fastest first."""
    return list(_available_backends(tsyntax, bits_allocated))


@functools.lru_cache(maxsize=256)
def _available_backends(tsyntax: str, bits_allocated: int) -> tuple[str, ...]:
    # cached: looking for the installed decoders costs ~0.1 ms, and every codec asks
    out: list[str] = []
    if tsyntax in NATIVE_SYNTAXES:
        return ("pydicom",)
    if tsyntax == DEFLATED_FRAME_SYNTAX:
        return ("zlib",)
    if tsyntax == _uid.RLELossless and bits_allocated == 1:
        return ("rle1",)
    if tsyntax in _IMAGECODECS_SYNTAXES and bits_allocated == 8 and _has("imagecodecs"):
        out.append("imagecodecs")
    out += fast_backends(tsyntax, bits_allocated=bits_allocated)
    try:
        out.append(f"pydicom:{_pydicom_plugin(tsyntax)}")
    except MissingDecoderError:
        if not out:
            raise
    return tuple(out)


def select_backend(tsyntax: str, *, bits_allocated: int, backend: str = "auto") -> str:
    """Resolve ``backend`` ("auto", "pydicom", "imagecodecs", ...) to a concrete one."""
    options = available_backends(tsyntax, bits_allocated=bits_allocated)
    if backend in ("auto", ""):
        return options[0]
    if backend == "pydicom":
        pinned = [b for b in options if b.startswith("pydicom")]
        if pinned:
            return pinned[0]
        return options[0]
    if backend in options or backend.startswith("pydicom:"):
        return backend
    if backend == "imagecodecs":  # the fastest imagecodecs backend for the syntax
        for option in options:
            if option.startswith("imagecodecs"):
                return option
    raise MissingDecoderError(
        f"backend {backend!r} cannot decode transfer syntax {tsyntax} "
        f"({_uid.UID(tsyntax).name}) here; available: {options}"
    )


# -- decoders ------------------------------------------------------------------


def _encapsulate_one(frame: bytes | memoryview) -> bytes:
    n = len(frame)
    pad = n % 2
    return b"".join(
        (ITEM_TAG, b"\x00\x00\x00\x00", ITEM_TAG, struct.pack("<L", n + pad), frame, b"\x00" * pad)
    )


def _decode_pydicom_encapsulated(
    data: bytes | memoryview, cfg: dict[str, Any], plugin: str, codec: str | None = None
) -> np.ndarray:
    if plugin == "imagecodecs":  # a codec resolved in another process
        _register_plugins()
    decoder = get_decoder(cfg["transfer_syntax"])
    options = _pixel_options(cfg)
    options.update(number_of_frames=1, as_rgb=cfg["as_rgb"])
    if codec is not None:
        options["imagecodecs_codec"] = codec
    try:
        arr, _ = decoder.as_array(_encapsulate_one(data), decoding_plugin=plugin, **options)
    except Exception:
        size = _smaller_jpeg(data, cfg)
        if size is None:
            raise
        # an edge tile stored cropped: decoded at its own size, placed by the caller
        options.update(rows=size[0], columns=size[1])
        arr, _ = decoder.as_array(_encapsulate_one(data), decoding_plugin=plugin, **options)
    return arr[None]


def _smaller_jpeg(data: bytes | memoryview, cfg: dict[str, Any]) -> tuple[int, int] | None:
    """``(rows, columns)`` of a JPEG-family codestream smaller than the frames of ``cfg``
    (pydicom decodes only at *Rows* x *Columns*), else ``None``."""
    if cfg["transfer_syntax"] in _J2K_FAMILY:
        return None
    info = jpeg_parameters(bytes(data))
    rows, cols = info.get("height"), info.get("width")
    if not (isinstance(rows, int) and isinstance(cols, int)):
        return None
    smaller = (rows, cols) != (cfg["rows"], cfg["columns"])
    return (
        (rows, cols) if smaller and 0 < rows <= cfg["rows"] and 0 < cols <= cfg["columns"] else None
    )


def _pixel_options(cfg: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "rows",
        "columns",
        "samples_per_pixel",
        "bits_allocated",
        "bits_stored",
        "pixel_representation",
        "photometric_interpretation",
        "planar_configuration",
        "pixel_keyword",
    )
    return {k: cfg[k] for k in keys}


def _frame_bits(cfg: dict[str, Any]) -> int:
    pixels = cfg["rows"] * cfg["columns"]
    samples = 2 if cfg["photometric_interpretation"] == "YBR_FULL_422" else cfg["samples_per_pixel"]
    return pixels * samples * cfg["bits_allocated"]


def masked_native(cfg: dict[str, Any]) -> tuple[np.dtype[Any], int] | None:
    """``(dtype, shift)`` when a native frame is its bytes with the unused high bits
    corrected (*Bits Stored* < *Bits Allocated*, little endian, one frame per chunk,
    interleaved samples, no colour conversion), else ``None``.

    Such a frame decodes as pydicom's ``_correct_unused_bits`` does: shifted left by
    ``shift`` bits and back, in the stored dtype (zero fill when unsigned, sign
    extension when signed), which `correct_unused_bits` does in place.
    """
    bits, stored = int(cfg["bits_allocated"]), int(cfg["bits_stored"])
    if (
        cfg["transfer_syntax"] not in (_uid.ExplicitVRLittleEndian, _uid.ImplicitVRLittleEndian)
        or cfg.get("pixel_keyword", "PixelData") != "PixelData"
        or bits not in (8, 16, 32)
        or not 0 < stored < bits
        or cfg["frames"] != 1
        or (cfg["samples_per_pixel"] > 1 and cfg["planar_configuration"] != 0)
        or cfg["photometric_interpretation"] == "YBR_FULL_422"
        or (cfg["as_rgb"] and cfg["photometric_interpretation"] == "YBR_FULL")
    ):
        return None
    kind = "i" if cfg["pixel_representation"] else "u"
    return np.dtype(f"<{kind}{bits // 8}"), bits - stored


def correct_unused_bits(arr: np.ndarray, shift: int) -> np.ndarray:
    """Clear (unsigned) or sign-extend (signed) the ``shift`` unused high bits, in place.

    The same values as pydicom's shift left and back; unsigned data take one pass (a
    mask) instead of two.
    """
    if arr.dtype.kind == "u":
        np.bitwise_and(arr, arr.dtype.type((1 << (8 * arr.dtype.itemsize - shift)) - 1), out=arr)
    else:
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def _decode_native(data: bytes | memoryview, cfg: dict[str, Any], tsyntax: str) -> np.ndarray:
    frame_bits = _frame_bits(cfg)
    n = min(cfg["frames"], (len(data) * 8) // frame_bits)
    if n < 1:
        raise CorruptFrameError(f"{len(data)} bytes hold no whole frame of {frame_bits // 8} bytes")
    masked = masked_native(cfg)
    if masked is not None:  # pydicom's result without its per-call set-up
        dtype, shift = masked
        samples = cfg["samples_per_pixel"]
        shape = (1, cfg["rows"], cfg["columns"], *((samples,) if samples > 1 else ()))
        arr = np.frombuffer(data, dtype=dtype, count=frame_bits // (8 * dtype.itemsize))
        arr = arr.reshape(shape).astype(dtype.newbyteorder("="), copy=True)
        return correct_unused_bits(arr, shift)
    nbytes = (n * frame_bits + 7) // 8
    options = _pixel_options(cfg)
    if tsyntax == _uid.ExplicitVRBigEndian:
        options["pixel_vr"] = cfg.get("pixel_vr", "OW")
        if options["pixel_vr"] == "OW" and cfg["bits_allocated"] == 8 and nbytes % 2:
            nbytes += 1  # 8-bit OW is swapped by 16-bit words: keep the padding byte
    options.update(number_of_frames=n, as_rgb=cfg["as_rgb"])
    arr, _ = get_decoder(tsyntax).as_array(bytes(data[:nbytes]), **options)
    if n == 1:
        arr = arr[None]
    return arr


def _decode_deflated(data: bytes | memoryview, cfg: dict[str, Any], _: str) -> np.ndarray:
    try:
        raw = zlib.decompress(bytes(data), wbits=-15)
    except zlib.error as exc:
        raise CorruptFrameError(f"the deflated frame does not inflate: {exc}") from exc
    return _decode_native(raw, {**cfg, "frames": 1}, _uid.ExplicitVRLittleEndian)


def _decode_rle_1bit(data: bytes | memoryview, cfg: dict[str, Any], _: str) -> np.ndarray:
    raw = bytes(data)
    if len(raw) < 64:
        raise CorruptFrameError(f"an RLE frame of {len(raw)} bytes has no 64-byte header")
    header = struct.unpack("<16L", raw[:64])
    nsegments = header[0]
    if nsegments != cfg["samples_per_pixel"]:
        raise CorruptFrameError(
            f"the RLE header has {nsegments} segments, expected {cfg['samples_per_pixel']} "
            "for 1-bit data"
        )
    offsets = [*header[1 : 1 + nsegments], len(raw)]
    segment = rle_decode_segment(raw[offsets[0] : offsets[1]])
    npix = cfg["rows"] * cfg["columns"]
    if len(segment) * 8 < npix:
        raise CorruptFrameError(
            f"the RLE segment decodes to {len(segment)} bytes, expected {(npix + 7) // 8}"
        )
    bits = np.unpackbits(np.frombuffer(segment, dtype=np.uint8), bitorder="little")
    return bits[:npix].reshape(1, cfg["rows"], cfg["columns"])


def _jpeg_colorspace(data: bytes | memoryview, cfg: dict[str, Any]) -> str:
    info = jpeg_parameters(bytes(data[:4096]))
    if info.get("component_ids") in ([82, 71, 66], [114, 103, 98]):
        return "RGB"
    if any(bytes(m).startswith(b"JFIF") for m in info.get("app", {}).values()):
        return "YCbCr"
    return "RGB" if cfg["photometric_interpretation"] == "RGB" else "YCbCr"


def _decode_imagecodecs(data: bytes | memoryview, cfg: dict[str, Any], _: str) -> np.ndarray:
    import imagecodecs

    if cfg["samples_per_pixel"] == 3:
        space = _jpeg_colorspace(data, cfg)
        out = "RGB" if cfg["as_rgb"] else space
        arr = imagecodecs.jpeg8_decode(bytes(data), colorspace=space, outcolorspace=out)
    else:
        arr = imagecodecs.jpeg8_decode(bytes(data))
    return np.asarray(arr)[None]


_DECODERS: dict[str, Callable[[bytes | memoryview, dict[str, Any], str], np.ndarray]] = {
    "imagecodecs": _decode_imagecodecs,
    "zlib": _decode_deflated,
    "rle1": _decode_rle_1bit,
}


def decode_chunk(data: bytes | memoryview, cfg: dict[str, Any]) -> np.ndarray:
    """Decode one chunk's bytes to ``(frames, rows, columns[, samples])``.

    ``cfg`` is the codec configuration (see
    [`dicom_dask.chunks.codec.DicomFrameCodec`][dicom_dask.chunks.codec.DicomFrameCodec]). Raises
    [`CorruptFrameError`][dicom_dask.errors.CorruptFrameError] when the bytes do not decode to that
    shape.
    """
    tsyntax = cfg["transfer_syntax"]
    backend = cfg["backend"]
    shape = (cfg["rows"], cfg["columns"]) + (
        (cfg["samples_per_pixel"],) if cfg["samples_per_pixel"] > 1 else ()
    )
    try:
        if tsyntax in NATIVE_SYNTAXES:
            arr = _decode_native(data, cfg, tsyntax)
        else:
            payload = unwrap_items(data)
            if backend.startswith("imagecodecs:"):
                codec = backend.partition(":")[2]
                fast = fast_decode(payload, cfg, codec)
                arr = (
                    fast
                    if fast is not None
                    else _decode_pydicom_encapsulated(payload, cfg, "imagecodecs", codec)
                )
            elif backend.startswith("pydicom"):
                plugin = backend.partition(":")[2] or _pydicom_plugin(tsyntax)
                fast = None
                if plugin == "imagecodecs" and tsyntax in JPEGLS_SYNTAXES:
                    fast = fast_decode(payload, cfg, "jpegls")
                arr = (
                    fast if fast is not None else _decode_pydicom_encapsulated(payload, cfg, plugin)
                )
            else:
                arr = _DECODERS[backend](payload, cfg, tsyntax)
    except (CorruptFrameError, MissingDecoderError):
        raise
    except Exception as exc:
        head = bytes(memoryview(data)[:8]).hex()
        raise CorruptFrameError(
            f"cannot decode a {_uid.UID(tsyntax).name} frame of {len(data)} bytes "
            f"(starting {head}) with {backend}: {exc}"
        ) from exc
    if arr.shape[1:] != shape:
        message = (
            f"a {_uid.UID(tsyntax).name} frame of {len(data)} bytes decoded with {backend} "
            f"to shape {arr.shape[1:]}, expected {shape}"
        )
        if _cropped(arr.shape[1:], shape):
            raise CroppedFrameError(message, frame=arr, expected=shape)
        raise CorruptFrameError(message)
    return arr


def _cropped(got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether a frame of shape ``got`` is one of ``expected`` with fewer rows and/or
    columns (the same samples)."""
    return (
        len(got) == len(expected)
        and got[2:] == expected[2:]
        and all(0 < g <= e for g, e in zip(got[:2], expected[:2], strict=True))
    )
