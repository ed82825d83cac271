"""The frames of a Segmentation: labels to segments, encoded in dask tasks, streamed.

Frame order: segments outermost, then TILED_FULL tile order (slides) or slice order
(volumes, a column of one-slice "tiles"). ``BINARY`` frames are bit-packed
continuously across frames (whatever their pixel count, see
[`bits`][dicom_dask.integrations.writers.bits]), ``FRACTIONAL`` frames are 8-bit
``round(p * max_fractional_value)``, ``LABELMAP`` frames hold the labels (8 or 16
bits).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import EncodeError, LayoutError
from dicom_dask.frames.storage import redact
from dicom_dask.integrations.writers.bits import BinaryFrame, write_bitstream
from dicom_dask.integrations.writers.common import CHUNK_EDGE, FrameProgress, encoded_bands
from dicom_dask.integrations.writers.encode import Encoder
from dicom_dask.integrations.writers.options import WriteOptions
from dicom_dask.integrations.writers.seg_header import SegContent
from dicom_dask.integrations.writers.stream import write_instance

if TYPE_CHECKING:
    import dask.array

__all__ = [
    "SEG_SYNTAXES",
    "SEG_TYPES",
    "FractionalFrame",
    "frame_encoder",
    "segment_count",
    "segment_passes",
    "segments_axis",
    "write_segmentation",
]

#: The segmentation types.
SEG_TYPES = ("BINARY", "FRACTIONAL", "LABELMAP")
#: Lossless syntaxes of FRACTIONAL and LABELMAP frames (highdicom's list for the IOD).
SEG_SYNTAXES = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
)


@dataclass(frozen=True)
class FractionalFrame:
    """``round(p * max_value)`` as 8-bit (NaN: 0), compressed by ``encoder`` if given."""

    max_value: int
    encoder: Encoder | None = None

    def __call__(self, tile: np.ndarray) -> bytes:
        """The frame of the probabilities ``tile``."""
        p = np.nan_to_num(np.asarray(tile, dtype=np.float64), nan=0.0)
        scaled = np.rint(np.clip(p, 0.0, 1.0) * self.max_value).astype(np.uint8)
        return scaled.tobytes() if self.encoder is None else self.encoder(scaled)


def segments_axis(labels: Any, spatial: int, kind: str) -> tuple[dask.array.Array, int]:
    """``(segments, *spatial)`` probabilities, or ``spatial`` labels; and the segment count
    (-1 for labels: counted later).

    Raises
    ------
    LayoutError
        When the shape or dtype does not fit ``kind``.
    """
    import dask.array as da

    arr = labels if isinstance(labels, da.Array) else da.asarray(labels)
    if kind == "FRACTIONAL":
        if arr.ndim == spatial:
            arr = arr[np.newaxis]
        if arr.ndim != spatial + 1:
            raise LayoutError(f"FRACTIONAL expects (segments, ...) probabilities, got {arr.shape}")
        return arr, int(arr.shape[0])
    if arr.ndim != spatial:
        raise LayoutError(f"expected a {spatial}-d label array, got shape {arr.shape}")
    if arr.dtype.kind not in "uib":
        raise LayoutError(f"{kind} labels must be integers, not {arr.dtype}")
    return arr, -1


def segment_count(array: dask.array.Array, count: int, content: SegContent) -> tuple[int, Any]:
    """The number of segments (from the descriptions, or the labels' maximum) and the
    frames' pixel dtype.

    Raises
    ------
    LayoutError
        When the labels hold no segment and none is described.
    """
    if content.kind == "FRACTIONAL":
        return count, np.uint8
    given = content.segment_descriptions or content.segment_labels
    n = len(given) if given else int(array.max().compute())
    if n < 1:
        raise LayoutError("the labels hold no segment (all zero) and no segment was described")
    return n, np.uint8 if n < 256 else np.uint16


def frame_encoder(kind: str, segment: int, transfer_syntax: str, max_value: int, dtype: Any) -> Any:
    """What encodes a tile into a frame of ``segment`` (1-based) of a ``kind`` SEG."""
    if kind == "BINARY":
        return BinaryFrame(segment)
    if kind == "FRACTIONAL":
        native = transfer_syntax == "1.2.840.10008.1.2.1"
        return FractionalFrame(max_value, None if native else Encoder(transfer_syntax, 1))
    return Encoder(transfer_syntax, 1, str(np.dtype(dtype)))


def segment_passes(
    array: dask.array.Array,
    content: SegContent,
    count: int,
    *,
    tile: tuple[int, int],
    label_dtype: Any,
    chunk_edge: int = CHUNK_EDGE,
    progress: FrameProgress,
) -> Iterator[list[bytes]]:
    """Frames of every segment in turn (one pass over the labels per segment)."""
    kind, ts, max_value = content.kind, content.transfer_syntax, content.max_fractional_value
    if kind == "LABELMAP":
        encoder = frame_encoder(kind, 0, ts, max_value, label_dtype)
        yield from encoded_bands(
            array.astype(label_dtype),
            tile=tile,
            encoder=encoder,
            chunk_edge=chunk_edge,
            progress=progress,
        )
        return
    for s in range(count):
        plane = array[s] if kind == "FRACTIONAL" else array
        encoder = frame_encoder(kind, s + 1, ts, max_value, label_dtype)
        yield from encoded_bands(
            plane, tile=tile, encoder=encoder, chunk_edge=chunk_edge, progress=progress
        )


def write_segmentation(
    ds: Dataset,
    batches: Iterator[list[bytes]],
    dest: str | os.PathLike[str],
    *,
    frame_shape: tuple[int, int],
    options: WriteOptions,
) -> str:
    """Stream the header ``ds`` and its frames ``batches`` to ``dest``; return its URL.

    One-bit frames are written as one bit stream; others as a (possibly
    encapsulated) instance with the offset table ``options`` ask for.

    Raises
    ------
    EncodeError
        When a frame failed to encode (the message names ``dest``).
    """
    bits = int(ds.BitsAllocated)
    try:
        if bits == 1:  # frames follow bit after bit, across byte boundaries
            return write_bitstream(
                ds,
                batches,
                dest,
                number_of_frames=int(ds.NumberOfFrames),
                bits_per_frame=frame_shape[0] * frame_shape[1],
                storage_options=options.storage_options,
            )
        written = write_instance(
            ds,
            batches,
            dest,
            number_of_frames=int(ds.NumberOfFrames),
            encapsulated=ds.file_meta.TransferSyntaxUID.is_encapsulated,
            frame_bytes=frame_shape[0] * frame_shape[1] * bits // 8,
            storage_options=options.storage_options,
            offset_table=options.offset_table,
            eot_threshold=options.eot_threshold,
        )
    except EncodeError as exc:  # raised in a task: it knows the tile, not the file
        raise EncodeError(f"{redact(os.fspath(dest))}: {exc}") from exc
    return written.url
