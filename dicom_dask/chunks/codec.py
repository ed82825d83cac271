"""The zarr v3 codec that decodes DICOM frames: ``dicom_dask.frame``.

It is registered in the ``zarr.codecs`` entry point group, so any zarr reader with
dicom_dask installed (kerchunk references included) decodes DICOM chunks. Native
frames that need no processing use zarr's own ``bytes`` codec instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from dicom_dask.chunks.decoders import decode_chunk, select_backend
from dicom_dask.errors import DicomDaskError

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

__all__ = ["CODEC_NAME", "DicomFrameCodec", "register"]

#: The name under which the codec is registered and written in ``zarr.json``.
CODEC_NAME = "dicom_dask.frame"


@dataclass(frozen=True)
class DicomFrameCodec(ArrayBytesCodec):
    """Decode encapsulated (or specially laid out native) DICOM frames.

    Parameters
    ----------
    transfer_syntax : str
        Transfer syntax UID of the encoded bytes.
    rows, columns, samples_per_pixel, bits_allocated, bits_stored,
    pixel_representation, photometric_interpretation, planar_configuration
        The Image Pixel attributes of the frames.
    pixel_keyword : str
        ``"PixelData"``, ``"FloatPixelData"`` or ``"DoubleFloatPixelData"``.
    pixel_vr : str
        VR of the pixel data element (big endian 8-bit OW data are byte swapped).
    frames : int
        Frames per chunk (more than one only for unaligned 1-bit native frames).
    as_rgb : bool
        Convert YBR_FULL / YBR_FULL_422 to RGB, as pydicom's ``pixel_array`` does.
    backend : str
        Which decoder decodes: ``"auto"`` resolves to the fastest installed one
        (``"imagecodecs"`` for 8-bit JPEG, ``"imagecodecs:<codec>"`` for JPEG 2000,
        HTJ2K, JPEG lossless and RLE, else ``"pydicom:<plugin>"``).
    order : list of int, optional
        The permutation a ``transpose`` codec before this one would have: the
        decoded frame ``(rows, columns[, samples])``, with the chunk's other
        (length 1) axes in front, is ``chunk.transpose(order)``. Transposing here
        copies in the decoding thread (in parallel, without the GIL) instead of in
        zarr's event loop, and hands zarr a contiguous chunk to paste. Written only
        when set.
    """

    is_fixed_size = False

    transfer_syntax: str
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    pixel_keyword: str
    pixel_vr: str
    frames: int
    as_rgb: bool
    backend: str
    order: tuple[int, ...] | None

    def __init__(
        self,
        *,
        transfer_syntax: str,
        rows: int,
        columns: int,
        samples_per_pixel: int = 1,
        bits_allocated: int,
        bits_stored: int | None = None,
        pixel_representation: int = 0,
        photometric_interpretation: str = "MONOCHROME2",
        planar_configuration: int = 0,
        pixel_keyword: str = "PixelData",
        pixel_vr: str = "OB",
        frames: int = 1,
        as_rgb: bool = True,
        backend: str = "auto",
        order: Sequence[int] | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "transfer_syntax": str(transfer_syntax),
            "rows": int(rows),
            "columns": int(columns),
            "samples_per_pixel": int(samples_per_pixel),
            "bits_allocated": int(bits_allocated),
            "bits_stored": int(bits_stored if bits_stored is not None else bits_allocated),
            "pixel_representation": int(pixel_representation),
            "photometric_interpretation": str(photometric_interpretation),
            "planar_configuration": int(planar_configuration),
            "pixel_keyword": str(pixel_keyword),
            "pixel_vr": str(pixel_vr),
            "frames": int(frames),
            "as_rgb": bool(as_rgb),
        }
        values["backend"] = select_backend(
            values["transfer_syntax"], bits_allocated=values["bits_allocated"], backend=backend
        )
        values["order"] = tuple(int(i) for i in order) if order else None
        if values["order"] is not None and (
            sorted(values["order"]) != list(range(len(values["order"]))) or values["frames"] != 1
        ):
            raise DicomDaskError(
                f"{CODEC_NAME}: order {list(values['order'])} is not a permutation of the "
                "chunk's axes, or the chunk holds more than one frame"
            )
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build the codec from its ``zarr.json`` entry."""
        _, configuration = parse_named_configuration(data, CODEC_NAME)
        return cls(**configuration)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """Return the codec's ``zarr.json`` entry."""
        return {"name": CODEC_NAME, "configuration": self.configuration()}

    def configuration(self) -> dict[str, Any]:
        """The codec's configuration as a plain dict (``order`` only when set)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["order"] is None:
            del out["order"]
        else:
            out["order"] = list(out["order"])
        return out

    @cached_property
    def _config(self) -> dict[str, Any]:
        return self.configuration()

    def decode_bytes(self, data: bytes | memoryview) -> np.ndarray:
        """Decode one chunk's bytes to ``(frames, rows, columns[, samples])`` (sync)."""
        arr = decode_chunk(data, self._config)
        if arr.shape[0] < self.frames:  # the last chunk of unaligned 1-bit frames
            pad = np.zeros((self.frames - arr.shape[0], *arr.shape[1:]), dtype=arr.dtype)
            arr = np.concatenate([arr, pad])
        if self.order is not None:  # frames == 1: the chunk's other axes have length 1
            stored = (1,) * (len(self.order) - arr.ndim + 1) + arr.shape[1:]
            arr = np.ascontiguousarray(arr.reshape(stored).transpose(self._inverse))
        return arr

    @cached_property
    def _inverse(self) -> tuple[int, ...]:
        assert self.order is not None
        return tuple(int(i) for i in np.argsort(self.order))

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        arr = self.decode_bytes(chunk_bytes.as_numpy_array().data)
        dtype = chunk_spec.dtype.to_native_dtype()
        arr = np.ascontiguousarray(arr, dtype=dtype).reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(arr)  # type: ignore[arg-type]

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise DicomDaskError(
            f"{CODEC_NAME} only decodes: DICOM-backed arrays are read-only; copy the data "
            "to another zarr array to write it"
        )

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{CODEC_NAME} output size is not fixed")


def register() -> None:
    """Register the codec with zarr (done by the entry point; harmless to repeat)."""
    from zarr.registry import register_codec

    register_codec(CODEC_NAME, DicomFrameCodec)
