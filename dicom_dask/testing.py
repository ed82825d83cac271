"""Write synthetic DICOM files with pydicom: for tests, benchmarks and the demo.

Nothing here is downloaded: frames are encoded by pydicom's encoders (RLE, JPEG-LS
through pyjpegls) or, for JPEG baseline, by imagecodecs (libjpeg-turbo) or Pillow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, itemize_frame
from pydicom.pixels import pack_bits

__all__ = ["encode_frame", "make_dataset", "write_dicom"]


def encode_frame(frame: np.ndarray, transfer_syntax: str, *, quality: int = 90) -> bytes:
    """Encode one frame ``(rows, columns[, samples])`` in ``transfer_syntax``."""
    if transfer_syntax == _uid.JPEGBaseline8Bit:
        try:
            import imagecodecs

            return bytes(imagecodecs.jpeg8_encode(frame, level=quality))
        except ImportError:
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
            return buf.getvalue()
    from pydicom.pixels import get_encoder

    samples = frame.shape[2] if frame.ndim == 3 else 1
    bits = frame.dtype.itemsize * 8
    opts = {
        "rows": frame.shape[0],
        "columns": frame.shape[1],
        "samples_per_pixel": samples,
        "bits_allocated": bits,
        "bits_stored": bits,
        "pixel_representation": int(frame.dtype.kind == "i"),
        "photometric_interpretation": "RGB" if samples == 3 else "MONOCHROME2",
        "planar_configuration": 0,
        "number_of_frames": 1,
    }
    return bytes(get_encoder(transfer_syntax).encode(np.ascontiguousarray(frame), **opts))


def make_dataset(
    frames: np.ndarray,
    *,
    transfer_syntax: str = _uid.ExplicitVRLittleEndian,
    offset_table: str = "bot",
    fragments_per_frame: int = 1,
    planar_configuration: int = 0,
    bits_allocated: int | None = None,
    photometric_interpretation: str | None = None,
    encoded: Sequence[bytes] | None = None,
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """A Dataset holding ``frames`` of shape ``(frames, rows, columns[, samples])``.

    Parameters
    ----------
    offset_table : {"bot", "eot", "none"}
        For encapsulated syntaxes: a Basic Offset Table, an Extended Offset Table
        (with an empty BOT), or an empty BOT.
    fragments_per_frame : int
        Split each encoded frame over this many fragments (BOT or none only).
    bits_allocated : int, optional
        ``1`` packs a binary image bit by bit (native only).
    """
    frames = np.asarray(frames)
    nframes, rows, cols = frames.shape[:3]
    samples = frames.shape[3] if frames.ndim == 4 else 1
    is_float = frames.dtype.kind == "f"
    ba = bits_allocated or frames.dtype.itemsize * 8
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = _uid.UID(transfer_syntax)
    ds.file_meta.MediaStorageSOPClassUID = _uid.UID("1.2.840.10008.5.1.4.1.1.7.2")
    ds.file_meta.MediaStorageSOPInstanceUID = _uid.generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid.generate_uid()
    ds.SeriesInstanceUID = _uid.generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    default_pi = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3 and transfer_syntax == _uid.JPEGBaseline8Bit:
        default_pi = "YBR_FULL_422"  # libjpeg-turbo writes YCbCr with 4:2:0/4:2:2
    ds.PhotometricInterpretation = photometric_interpretation or default_pi
    if samples > 1:
        ds.PlanarConfiguration = planar_configuration
    ds.NumberOfFrames = nframes
    ds.BitsAllocated = ba
    if not is_float:
        ds.BitsStored = ba
        ds.HighBit = ba - 1
        ds.PixelRepresentation = int(frames.dtype.kind == "i")
    tsyntax = _uid.UID(transfer_syntax)
    if not tsyntax.is_encapsulated:
        if ba == 1:
            value = pack_bits(frames.astype(np.uint8).ravel())
        else:
            data = frames
            if samples > 1 and planar_configuration == 1:
                data = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
            big = tsyntax == _uid.ExplicitVRBigEndian
            value = data.astype(data.dtype.newbyteorder(">" if big else "<")).tobytes()
        if len(value) % 2:
            value += b"\x00"
        if is_float:
            keyword = "FloatPixelData" if ba == 32 else "DoubleFloatPixelData"
            setattr(ds, keyword, value)
            ds[keyword].VR = "OF" if ba == 32 else "OD"
        else:
            ds.PixelData = value
            ds["PixelData"].VR = "OB" if ba <= 8 else "OW"
    else:
        if encoded is None:
            encoded = [encode_frame(f, tsyntax) for f in frames]
        if offset_table == "eot":
            value, eot, lengths = encapsulate_extended(list(encoded))
            ds.PixelData = value
            ds.ExtendedOffsetTable = eot
            ds.ExtendedOffsetTableLengths = lengths
        elif offset_table == "bot":
            ds.PixelData = encapsulate(
                list(encoded), fragments_per_frame=fragments_per_frame, has_bot=True
            )
        elif offset_table == "none":
            items = b"".join(b"".join(itemize_frame(f, fragments_per_frame)) for f in encoded)
            ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + items
        else:
            raise ValueError(f"offset_table must be 'bot', 'eot' or 'none', got {offset_table!r}")
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def write_dicom(path: str | os.PathLike[str], frames: np.ndarray, **kwargs: Any) -> str:
    """Write ``frames`` to ``path`` as a DICOM file (see :func:`make_dataset`)."""
    ds = make_dataset(frames, **kwargs)
    tsyntax = ds.file_meta.TransferSyntaxUID
    ds.save_as(
        os.fspath(path),
        enforce_file_format=True,
        implicit_vr=tsyntax == _uid.ImplicitVRLittleEndian,
        little_endian=tsyntax != _uid.ExplicitVRBigEndian,
    )
    return os.fspath(path)
