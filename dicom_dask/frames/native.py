"""Byte ranges of native (uncompressed) frames, by arithmetic alone."""

from __future__ import annotations

import math

import numpy as np
from pydicom import uid as _uid

from dicom_dask.enums import FrameEncoding
from dicom_dask.errors import TruncatedFileError
from dicom_dask.frames.header import DicomHeader
from dicom_dask.frames.ranges import FrameRanges
from dicom_dask.frames.sizes import format_size

__all__ = ["frames_per_chunk", "native_ranges", "swapped_words"]


def frames_per_chunk(frame_bits: int, *, word_bits: int = 8) -> int:
    """Smallest number of frames whose bits fill whole bytes (or words).

    Frames of BitsAllocated 1 need not start on a byte boundary; grouping ``k``
    frames per chunk makes every chunk start on one. 8-bit data of VR OW in
    Explicit VR Big Endian are byte swapped as 16-bit words (``word_bits=16``): a
    frame of an odd number of bytes ends mid-word, so two frames make a chunk.
    """
    return word_bits // math.gcd(frame_bits, word_bits)


def swapped_words(header: DicomHeader) -> bool:
    """Whether the native pixel bytes are 8-bit samples byte swapped as 16-bit words
    (VR OW in Explicit VR Big Endian): chunks must then start and end on even bytes."""
    desc = header.description
    return (
        str(header.transfer_syntax) == _uid.ExplicitVRBigEndian
        and desc.bits_allocated == 8
        and header.element.vr == "OW"
    )


def native_ranges(header: DicomHeader) -> FrameRanges:
    """Return the byte range of every chunk of native frames in ``header``'s file."""
    desc = header.description
    nframes = desc.number_of_frames
    frame_bits = desc.native_frame_bits
    word = 16 if swapped_words(header) else 8
    k = frames_per_chunk(frame_bits, word_bits=word)
    needed = (nframes * frame_bits + 7) // 8
    if word == 16:
        needed += needed % 2  # the value's padding byte completes the last word
    element = header.element
    available = element.length if element.length is not None else 0
    if needed > available:
        raise TruncatedFileError(
            f"{header.url}: {element.keyword} at byte {element.element_offset} holds "
            f"{available} bytes, but {nframes} frame(s) of {format_size(desc.columns, desc.rows)}"
            f" x {desc.samples_per_pixel} sample(s) at {desc.bits_allocated} bit(s) need {needed}"
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
    if word == 16:
        stops += stops % np.uint64(2)
    return FrameRanges(
        offsets=starts + np.uint64(element.value_offset),
        lengths=stops - starts,
        encoding=np.full(nchunks, FrameEncoding.RAW.value, dtype=np.uint8),
        fragments=np.zeros(nchunks, dtype=np.uint32),
        frames_per_chunk=k,
    )
