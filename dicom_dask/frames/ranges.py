"""The result of locating frames: one byte range per chunk of frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FrameRanges"]


@dataclass(frozen=True, eq=False)
class FrameRanges:
    """Byte ranges of the chunks of one file's frames, in frame order.

    Attributes
    ----------
    offsets, lengths : numpy.ndarray
        ``uint64`` byte offset and length of each chunk's range.
    encoding : numpy.ndarray
        ``uint8`` [`FrameEncoding`][dicom_dask.enums.FrameEncoding] value of each range.
    fragments : numpy.ndarray
        ``uint32`` number of encapsulated fragments in each frame (0 when native or
        unknown because an offset table was used).
    frames_per_chunk : int
        Frames held by one chunk (1 except for unaligned 1-bit native frames).
    """

    offsets: np.ndarray
    lengths: np.ndarray
    encoding: np.ndarray
    fragments: np.ndarray
    frames_per_chunk: int = 1
    #: How the ranges were found: "native", "eot", "bot", "scan" or "inline".
    method: str = "native"

    def __len__(self) -> int:
        return int(self.offsets.shape[0])
