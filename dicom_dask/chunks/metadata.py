"""Pure builders of ``zarr.json`` documents for DICOM-backed arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom import uid as _uid

from dicom_dask.chunks.codec import DicomFrameCodec
from dicom_dask.enums import NATIVE_SYNTAXES
from dicom_dask.frames.header import DicomHeader, PixelDescription

__all__ = ["array_metadata", "frame_codecs", "needs_frame_codec", "output_photometric"]


def needs_frame_codec(tsyntax: str, desc: PixelDescription, *, as_rgb: bool, vr: str) -> bool:
    """Whether native frames need ``dicom_dask.frame`` rather than zarr's ``bytes``.

    zarr's ``bytes`` codec gives pydicom's result only when nothing is unpacked,
    masked, swapped or colour converted.
    """
    if tsyntax not in NATIVE_SYNTAXES:
        return True
    pi = desc.photometric_interpretation
    return (
        desc.bits_allocated == 1
        or (desc.pixel_keyword == "PixelData" and desc.bits_stored != desc.bits_allocated)
        or pi == "YBR_FULL_422"
        or (as_rgb and pi == "YBR_FULL")
        or (tsyntax == _uid.ExplicitVRBigEndian and desc.bits_allocated == 8 and vr == "OW")
    )


def output_photometric(desc: PixelDescription, *, as_rgb: bool, tsyntax: str) -> str:
    """The photometric interpretation of the decoded pixels."""
    pi = desc.photometric_interpretation
    if pi in ("YBR_ICT", "YBR_RCT"):
        return "RGB"  # JPEG 2000 decoders undo the component transform
    if as_rgb and pi in ("YBR_FULL", "YBR_FULL_422"):
        return "RGB"
    if pi == "YBR_FULL_422" and tsyntax in NATIVE_SYNTAXES:
        return "YBR_FULL"  # the subsampling is removed
    return pi


def _transpose(axes: str, stored: str) -> list[dict[str, Any]]:
    """A ``transpose`` codec taking chunk ``axes`` to the ``stored`` frame layout."""
    encoded = [a for a in axes if a not in "yxs"] + [a for a in stored if a in axes]
    order = [axes.index(a) for a in encoded]
    if order == sorted(order):
        return []
    return [{"name": "transpose", "configuration": {"order": order}}]


def frame_codecs(
    header: DicomHeader,
    *,
    frames_per_chunk: int,
    as_rgb: bool,
    backend: str,
    axes: str | None = None,
) -> list[dict[str, Any]]:
    """The codec chain of an array whose chunks are frames of ``header``'s file.

    Parameters
    ----------
    axes : str, optional
        One letter per array dimension: ``y``/``x`` for the frame's rows/columns,
        ``s`` for the samples of a pixel, anything else for a dimension along which a
        chunk holds one frame (default ``"fyx"`` or ``"fyxs"``). A ``transpose``
        codec is added when the stored layout differs from the array's.
    """
    desc = header.description
    if axes is None:
        axes = "fyx" + ("s" if desc.samples_per_pixel > 1 else "")
    tsyntax = str(header.transfer_syntax)
    if header.inline_pixel_data is not None:
        tsyntax = str(_uid.ExplicitVRLittleEndian)
    vr = header.element.vr
    if needs_frame_codec(tsyntax, desc, as_rgb=as_rgb, vr=vr):
        transpose = _transpose(axes, "yxs")
        # one frame per chunk: the codec transposes as it decodes (in its worker thread)
        folded = transpose and frames_per_chunk == 1
        codec = DicomFrameCodec(
            transfer_syntax=tsyntax,
            frames=frames_per_chunk,
            as_rgb=as_rgb,
            backend=backend,
            pixel_vr=vr,
            order=transpose[0]["configuration"]["order"] if folded else None,
            **desc.decoder_options(),
        )
        return [*([] if folded else transpose), codec.to_dict()]
    planar = desc.samples_per_pixel > 1 and desc.planar_configuration == 1
    codecs = _transpose(axes, "syx" if planar else "yxs")
    endian = "big" if tsyntax == _uid.ExplicitVRBigEndian else "little"
    codecs.append({"name": "bytes", "configuration": {"endian": endian}})
    return codecs


def array_metadata(
    *,
    shape: tuple[int, ...],
    chunk_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    codecs: list[dict[str, Any]],
    dimension_names: tuple[str, ...],
    attributes: dict[str, Any] | None = None,
    fill_value: int | float = 0,
) -> dict[str, Any]:
    """A zarr v3 array ``zarr.json`` document."""
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": np.dtype(dtype).name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk_shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value,
        "codecs": codecs,
        "attributes": attributes or {},
        "dimension_names": list(dimension_names),
        "storage_transformers": [],
    }
