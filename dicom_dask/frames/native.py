"""Byte ranges of native (uncompressed) frames, by arithmetic alone."""

from __future__ import annotations

import math

import numpy as np

from dicom_dask.enums import FrameEncoding
from dicom_dask.errors import TruncatedFileError
from dicom_dask.frames.header import DicomHeader
from dicom_dask.frames.ranges import FrameRanges

__all__ = ["frames_per_chunk", "native_ranges"]


def frames_per_chunk(frame_bits: int) -> int:
    """Smallest number of frames whose bits fill whole bytes.

    Frames of BitsAllocated 1 need not start on a byte boundary; grouping ``k``
    frames per chunk makes every chunk start on one.
    """
    return 8 // math.gcd(frame_bits, 8)


def native_ranges(header: DicomHeader) -> FrameRanges:
    """Return the byte range of every chunk of native frames in ``header``'s file."""
    desc = header.description
    nframes = desc.number_of_frames
    frame_bits = desc.native_frame_bits
    k = frames_per_chunk(frame_bits)
    needed = (nframes * frame_bits + 7) // 8
    element = header.element
    available = element.length if element.length is not None else 0
    if needed > available:
        raise TruncatedFileError(
            f"{header.url}: {element.keyword} at byte {element.element_offset} holds "
            f"{available} bytes, but {nframes} frame(s) of {desc.rows} x {desc.columns} x "
            f"{desc.samples_per_pixel} at {desc.bits_allocated} bit(s) need {needed}"
        )
    nchunks = -(-nframes // k)
    if nchunks == 1:  # a single-frame file: plain integers are much cheaper than arrays
        return FrameRanges(
            offsets=np.array([element.value_offset], dtype=np.uint64),
            lengths=np.array([needed], dtype=np.uint64),
            encoding=np.zeros(1, dtype=np.uint8),
            fragments=np.zeros(1, dtype=np.uint32),
            frames_per_chunk=k,
        )
    first = np.arange(nchunks, dtype=np.uint64) * np.uint64(k)
    last = np.minimum(first + np.uint64(k), np.uint64(nframes))
    start_bits = first * np.uint64(frame_bits)
    stop_bits = last * np.uint64(frame_bits)
    starts = start_bits // np.uint64(8)
    stops = (stop_bits + np.uint64(7)) // np.uint64(8)
    return FrameRanges(
        offsets=starts + np.uint64(element.value_offset),
        lengths=stops - starts,
        encoding=np.full(nchunks, FrameEncoding.RAW.value, dtype=np.uint8),
        fragments=np.zeros(nchunks, dtype=np.uint32),
        frames_per_chunk=k,
    )
