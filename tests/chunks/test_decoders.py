"""The imagecodecs backends (JPEG 2000, HTJ2K, JPEG lossless, RLE, JPEG-LS) against pydicom.

Every case is written with an encoder other than the decoder under test, read
back by pydicom's ``pixel_array`` (pylibjpeg's plugins), by ``backend="auto"``
(the imagecodecs backend it records), by ``backend="pydicom"`` and by zarr. The
fast path (no pydicom pipeline) and pydicom's pipeline with the imagecodecs
plugin are also compared frame by frame, and each case says which of the two it
exercises, so that neither can silently stop being tested.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.pixels import get_encoder, pixel_array

import dicom_dask
from dicom_dask.chunks.decoders import (
    _decode_pydicom_encapsulated,
    available_backends,
    unwrap_items,
)
from dicom_dask.chunks.fastcodecs import fast_decode
from dicom_dask.testing import make_dataset

imagecodecs = pytest.importorskip("imagecodecs")
RNG = np.random.default_rng(15)


def _frames(dtype: Any, bits_stored: int, samples: int, n: int = 2) -> np.ndarray:
    """Smooth frames (so lossy codecs keep them close) of ``bits_stored`` bits."""
    signed = np.dtype(dtype).kind == "i"
    lo, hi = (
        (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1)
        if signed
        else (0, 2**bits_stored - 1)
    )
    yy, xx = np.mgrid[0:24, 0:30]
    base = (np.sin(xx / 5.0) * np.cos(yy / 7.0) + 1) / 2
    shape = (n, 24, 30) + ((samples,) if samples > 1 else ())
    noise = RNG.uniform(-0.05, 0.05, shape)
    if samples > 1:
        base = base[..., None]
    values = lo + (hi - lo) * np.clip(base + noise, 0, 1)
    out = np.round(values).astype(dtype)
    out.flat[:4] = [lo, hi, lo, hi]  # the extremes: saturation is where decoders differ
    return out


def _strip_jfif(stream: bytes) -> bytes:
    """Drop the JFIF APP0 segment libjpeg-turbo writes (DICOM RGB streams carry none)."""
    if stream[2:4] == b"\xff\xe0":
        length = int.from_bytes(stream[4:6], "big")
        return stream[:2] + stream[4 + length :]
    return stream


def _encode(frame: np.ndarray, syntax: str, bits_stored: int, how: str) -> bytes:
    signed = frame.dtype.kind == "i"
    if syntax in (uid.JPEG2000Lossless, uid.JPEG2000):
        lossless = syntax == uid.JPEG2000Lossless
        return bytes(
            imagecodecs.jpeg2k_encode(
                frame,
                level=0 if lossless else 40,
                codecformat="J2K",
                bitspersample=bits_stored,
                reversible=lossless,
            )
        )
    if syntax in (uid.HTJ2KLossless, uid.HTJ2K):
        lossless = syntax == uid.HTJ2KLossless
        return bytes(
            imagecodecs.htj2k_encode(frame, level=None if lossless else 0.3, reversible=lossless)
        )
    if syntax == uid.JPEGLosslessSV1:
        stream = bytes(
            imagecodecs.jpeg8_encode(
                frame.view(frame.dtype.str.replace("i", "u")),
                lossless=True,
                predictor=1,
                bitspersample=bits_stored,
            )
        )
        if how != "jfif":
            return _strip_jfif(stream)
        # component IDs 1, 2, 3 (frame and scan headers): pydicom then reads YBR_FULL
        sof, sos = stream.index(b"\xff\xc3"), stream.index(b"\xff\xda")
        ids = bytearray(stream)
        for k in range(frame.shape[2] if frame.ndim == 3 else 1):
            ids[sof + 10 + 3 * k] = ids[sos + 5 + 2 * k] = k + 1
        jfif = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        return b"\xff\xd8" + jfif + _strip_jfif(bytes(ids))[2:]
    samples = frame.shape[2] if frame.ndim == 3 else 1
    options = {
        "rows": frame.shape[0],
        "columns": frame.shape[1],
        "samples_per_pixel": samples,
        "bits_allocated": frame.dtype.itemsize * 8,
        "bits_stored": bits_stored,
        "pixel_representation": int(signed),
        "photometric_interpretation": "RGB" if samples == 3 else "MONOCHROME2",
        "planar_configuration": 0,
        "number_of_frames": 1,
    }
    return bytes(get_encoder(syntax).encode(np.ascontiguousarray(frame), **options))


# (syntax, dtype, bits stored, samples, variant, path the auto backend takes)
CASES = [
    (uid.JPEG2000Lossless, np.uint8, 8, 1, "", "fast"),
    (uid.JPEG2000Lossless, np.uint16, 12, 1, "", "fast"),
    (uid.JPEG2000Lossless, np.int16, 12, 1, "", "fast"),
    (uid.JPEG2000Lossless, np.uint8, 8, 3, "", "fast"),
    (uid.JPEG2000Lossless, np.uint16, 12, 1, "precision-16", "pydicom"),  # BitsStored 16
    (uid.JPEG2000Lossless, np.int16, 12, 1, "unsigned-codestream", "pydicom"),
    (uid.JPEG2000, np.uint8, 8, 3, "", "fast"),
    (uid.JPEG2000, np.int16, 16, 1, "", "fast"),
    (uid.HTJ2KLossless, np.uint8, 8, 3, "", "fast"),
    (uid.HTJ2KLossless, np.uint16, 16, 1, "", "fast"),
    (uid.HTJ2KLossless, np.int16, 16, 1, "", "fast"),
    (uid.HTJ2K, np.uint8, 8, 3, "", "fast"),
    (uid.JPEGLosslessSV1, np.uint8, 8, 1, "", "fast"),
    (uid.JPEGLosslessSV1, np.uint16, 12, 1, "", "fast"),
    (uid.JPEGLosslessSV1, np.int16, 16, 1, "", "fast"),
    (uid.JPEGLosslessSV1, np.uint8, 8, 3, "", "fast"),
    (uid.JPEGLosslessSV1, np.uint8, 8, 3, "jfif", "pydicom"),  # JFIF: pydicom reads YBR
    (uid.RLELossless, np.uint8, 8, 1, "", "fast"),
    (uid.RLELossless, np.uint8, 8, 3, "", "fast"),
    (uid.RLELossless, np.uint16, 12, 1, "garbage-high-bits", "fast"),
    (uid.RLELossless, np.int16, 12, 1, "garbage-high-bits", "fast"),
    (uid.RLELossless, np.uint16, 16, 3, "", "fast"),
    (uid.RLELossless, np.uint8, 8, 3, "ybr", "pydicom"),  # YBR_FULL -> RGB by pydicom
    (uid.JPEGLSLossless, np.uint16, 12, 1, "", "fast"),
    (uid.JPEGLSLossless, np.uint8, 8, 3, "", "fast"),
    (uid.JPEGLSLossless, np.int16, 12, 1, "", "pydicom"),  # pydicom's JPEG-LS sign correction
]


def _write(tmp_path, syntax, dtype, bits_stored, samples, variant) -> tuple[str, np.ndarray]:
    frames = _frames(dtype, bits_stored, samples)
    source = frames
    if variant == "garbage-high-bits":  # the unused bits are set: pydicom clears them
        source = frames ^ np.array(0x5000, dtype=frames.dtype)
    if variant == "unsigned-codestream":  # signed data in an unsigned codestream
        source = frames.view(np.uint16) & 0x0FFF
    coded_bits = source.dtype.itemsize * 8 if variant == "garbage-high-bits" else bits_stored
    encoded = [_encode(f, syntax, coded_bits, variant) for f in source]
    photometric = {"ybr": "YBR_FULL"}.get(variant)
    ds = make_dataset(
        frames, transfer_syntax=syntax, encoded=encoded, photometric_interpretation=photometric
    )
    ds.BitsStored = 16 if variant == "precision-16" else bits_stored
    ds.HighBit = ds.BitsStored - 1
    path = str(tmp_path / "codec.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path, frames


@pytest.mark.parametrize(("syntax", "dtype", "bits_stored", "samples", "variant", "route"), CASES)
def test_imagecodecs_backend_equals_pixel_array(
    tmp_path, syntax, dtype, bits_stored, samples, variant, route
) -> None:
    path, frames = _write(tmp_path, syntax, dtype, bits_stored, samples, variant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pixel_array(path)
        opened = dicom_dask.open_frames(path)
        pinned = dicom_dask.open_frames(path, backend="pydicom")
    expected = expected.reshape(opened.shape)
    lossless = syntax not in (uid.JPEG2000, uid.HTJ2K) and variant not in ("ybr", "jfif")
    if lossless and variant not in ("precision-16", "unsigned-codestream"):
        np.testing.assert_array_equal(expected, frames)
    backend = opened.codecs[-1]["configuration"]["backend"]
    assert backend == available_backends(syntax, bits_allocated=np.dtype(dtype).itemsize * 8)[0]
    assert backend.startswith("imagecodecs:") or backend == "pydicom:imagecodecs", backend
    assert not pinned.codecs[-1]["configuration"]["backend"].startswith("imagecodecs")
    np.testing.assert_array_equal(opened.array.compute(), expected)
    np.testing.assert_array_equal(opened.zarr[...], expected)
    np.testing.assert_array_equal(pinned.array.compute(), expected)

    # the fast path and pydicom's pipeline (same plugin) agree, frame by frame
    cfg = dict(opened.codecs[-1]["configuration"])
    codec = backend.partition(":")[2] if backend.startswith("imagecodecs:") else "jpegls"
    ds = pydicom.dcmread(path)
    for i, blob in enumerate(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=2)):
        payload = bytes(unwrap_items(blob))
        fast = fast_decode(payload, cfg, codec)
        assert (fast is not None) == (route == "fast")
        piped = _decode_pydicom_encapsulated(payload, cfg, "imagecodecs", codec)
        np.testing.assert_array_equal(piped[0].astype(expected.dtype), expected[i])
        if fast is not None:
            assert fast.dtype == piped.dtype
            np.testing.assert_array_equal(fast, piped)


def test_lossy_htj2k_openjph_difference(tmp_path) -> None:
    """OpenJPH on an irreversible HTJ2K stream: within 1 of OpenJPEG except where it
    wraps saturated samples (why ``auto`` decodes lossy HTJ2K with OpenJPEG)."""
    path, _ = _write(tmp_path, uid.HTJ2K, np.uint8, 8, 3, "")
    auto = dicom_dask.open_frames(path)
    assert auto.codecs[-1]["configuration"]["backend"] == "imagecodecs:jpeg2k"
    openjph = dicom_dask.open_frames(path, backend="imagecodecs:htj2k")
    assert openjph.codecs[-1]["configuration"]["backend"] == "imagecodecs:htj2k"
    a = auto.array.compute().astype(np.int16)
    b = openjph.array.compute().astype(np.int16)
    diff = np.abs(a - b)
    wrapped = diff > 128
    assert np.all(diff[~wrapped] <= 1)
    if wrapped.any():  # a saturated sample comes out at the other end of the range
        assert set(np.unique(a[wrapped])) <= {0, 255}


def test_imagecodecs_alias_and_unknown_backend(tmp_path) -> None:
    path, _ = _write(tmp_path, uid.RLELossless, np.uint8, 8, 1, "")
    opened = dicom_dask.open_frames(path, backend="imagecodecs")
    assert opened.codecs[-1]["configuration"]["backend"] == "imagecodecs:packbits"
    with pytest.raises(dicom_dask.DicomDaskError, match="imagecodecs:jpeg2k"):
        dicom_dask.open_frames(path, backend="imagecodecs:jpeg2k")


def test_rle_fallback_names_the_problem(tmp_path) -> None:
    """A segment that decodes short goes through pydicom's RLE decoder (not silently
    padded by the fast path): the same array as pixel_array."""
    frames = _frames(np.uint8, 8, 1, n=1)
    good = _encode(frames[0], uid.RLELossless, 8, "")
    short = good[:-4]  # the last run is cut off
    ds = make_dataset(frames, transfer_syntax=uid.RLELossless, encoded=[short])
    path = str(tmp_path / "short.dcm")
    ds.save_as(path, enforce_file_format=True)
    cfg = dict(dicom_dask.open_frames(path).codecs[-1]["configuration"])
    assert fast_decode(short, cfg, "packbits") is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = pixel_array(path, decoding_plugin="pydicom")
        except Exception:  # pydicom refuses it: so must we
            with pytest.raises(dicom_dask.DicomDaskError):
                dicom_dask.open_frames(path).array.compute()
            return
        got = dicom_dask.open_frames(path).array.compute()
    np.testing.assert_array_equal(got[0], expected)


def test_codec_order_folds_the_transpose(tmp_path) -> None:
    """A channel-first zarr array of RGB tiles: the frame codec transposes as it
    decodes (no ``transpose`` codec, a contiguous chunk for zarr to paste), with
    the values the ``transpose`` codec chain gives; ``order`` round-trips."""
    from dicom_dask.chunks.codec import DicomFrameCodec
    from dicom_dask.chunks.metadata import frame_codecs

    path, frames = _write(tmp_path, uid.RLELossless, np.uint8, 8, 3, "")
    opened = dicom_dask.open_frames(path)
    header = opened.index.header
    folded = frame_codecs(header, frames_per_chunk=1, as_rgb=True, backend="auto", axes="fsyx")
    assert [c["name"] for c in folded] == ["dicom_dask.frame"]
    assert folded[0]["configuration"]["order"] == [0, 2, 3, 1]
    codec = DicomFrameCodec.from_dict(folded[0])
    assert codec.to_dict() == folded[0]
    blob = bytes(unwrap_items(opened.store.read_ref(opened.manifest.get((0, 0, 0, 0)))))
    chunk = codec.decode_bytes(blob)
    assert chunk.flags.c_contiguous
    np.testing.assert_array_equal(chunk, np.moveaxis(frames[:1], -1, 1))
    unfolded = frame_codecs(header, frames_per_chunk=1, as_rgb=True, backend="auto", axes="fyxs")
    assert "order" not in unfolded[0]["configuration"]
    with pytest.raises(dicom_dask.DicomDaskError, match="permutation"):
        DicomFrameCodec(**{**folded[0]["configuration"], "order": [0, 0, 1, 2]})


def _real_entries() -> list[dict[str, Any]]:
    from dicom_dask.chunks.fastcodecs import DECODER_DEPENDENCIES
    from tests.conftest import REFERENCE

    return [e for e in REFERENCE["files"] if e["transfer_syntax_uid"] in DECODER_DEPENDENCIES]


@pytest.mark.parametrize("entry", _real_entries(), ids=lambda e: e["path"])
def test_real_files_bit_exact_with_imagecodecs(real_dir, entry) -> None:
    """Every real JPEG 2000, HTJ2K, JPEG lossless, JPEG-LS and RLE file: the default
    (imagecodecs) backend gives pydicom's ``pixel_array`` exactly, lossy J2K included."""
    from tests.conftest import REAL, read_reference_array

    expected = read_reference_array(entry)
    if expected is None:
        pytest.skip("pydicom cannot decode this file")
    expected = expected.astype(expected.dtype.newbyteorder("="))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = dicom_dask.open_frames(REAL / entry["path"])
    backend = opened.codecs[-1]["configuration"]["backend"]
    assert backend.startswith("imagecodecs") or backend in ("pydicom:imagecodecs", "rle1")
    got = opened.array.compute()
    if entry["number_of_frames"] == 1:
        got = got[0]
    np.testing.assert_array_equal(got, expected)
