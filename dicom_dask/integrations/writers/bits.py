"""BINARY segmentation frames as one continuous bit stream, and its native writer.

PS3.5 8.1.1: with Bits Allocated 1, the frames follow each other bit after bit; a
frame whose rows x columns is not a multiple of 8 ends inside a byte that the next
frame goes on filling (pixel ``p`` of frame ``f`` is bit ``(f * rows * columns + p)``,
little-endian bit order within each byte). Frames are packed tile by tile inside dask
tasks, each into its own whole bytes; [`Bitstream`][dicom_dask.integrations.writers.bits.Bitstream]
shifts each one to its offset in the stream and joins the byte the two share, as they
come in order. The Pixel Data element then has the stream's exact length,
``ceil(frames * rows * columns / 8)`` (padded to even), which this module writes (the
generic stream writer counts whole frames of whole bytes).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import InvalidHeaderError
from dicom_dask.frames.storage import resolve_fs
from dicom_dask.integrations.writers.stream import header_bytes, is_local
from dicom_dask.types import StorageOptions

__all__ = ["BinaryFrame", "Bitstream", "write_bitstream"]


@dataclass(frozen=True)
class BinaryFrame:
    """Packs ``tile == segment`` into whole bytes (little-endian bit order, zero padded)."""

    segment: int

    def __call__(self, tile: np.ndarray) -> bytes:
        bits = np.asarray(tile == self.segment, dtype=np.uint8).ravel()
        return np.packbits(bits, bitorder="little").tobytes()


class Bitstream:
    """Joins frames of ``bits_per_frame`` bits, each packed from bit 0, into one stream."""

    def __init__(self, bits_per_frame: int) -> None:
        self.bits = int(bits_per_frame)
        self.offset = 0  # bits of the pending byte already used
        self.pending = 0
        self.frames = 0
        self.length = 0  # bytes emitted

    def push(self, frame: bytes) -> bytes:
        """The whole bytes of the stream completed by ``frame``."""
        self.frames += 1
        expected = -(-self.bits // 8)
        if len(frame) != expected:
            raise InvalidHeaderError(
                f"a BINARY frame of {self.bits} pixels is {len(frame)} bytes, not {expected}"
            )
        if self.offset == 0 and self.bits % 8 == 0:
            self.length += len(frame)
            return frame
        x = np.frombuffer(frame, dtype=np.uint8)
        o = self.offset
        y = np.zeros(x.size + 1, dtype=np.uint8)
        y[:-1] = (x << o) & 0xFF
        if o:
            y[1:] |= x >> (8 - o)
        y[0] |= self.pending
        end = o + self.bits
        whole, self.offset = divmod(end, 8)
        self.pending = int(y[whole]) if self.offset else 0
        out = y[:whole].tobytes()
        self.length += len(out)
        return out

    def close(self) -> bytes:
        """The last, partly filled byte (if any)."""
        if not self.offset:
            return b""
        self.offset = 0
        self.length += 1
        return bytes([self.pending])

    @staticmethod
    def total_bytes(frames: int, bits_per_frame: int) -> int:
        """Bytes of ``frames`` frames of ``bits_per_frame`` bits, continuously packed."""
        return -(-frames * bits_per_frame // 8)


def write_bitstream(
    ds: Dataset,
    batches: Iterable[Sequence[bytes]],
    dest: str | os.PathLike[str],
    *,
    number_of_frames: int,
    bits_per_frame: int,
    storage_options: StorageOptions = None,
) -> str:
    """Write ``ds`` and its BINARY frames, continuously packed, as native Pixel Data."""
    total = Bitstream.total_bytes(number_of_frames, bits_per_frame)
    padded = total + total % 2
    if padded > 0xFFFFFFFE:
        raise InvalidHeaderError(
            f"{os.fspath(dest)}: {padded} bytes of BINARY pixel data do not fit a "
            "defined-length element (4 GiB); write fewer frames per instance"
        )
    head = header_bytes(ds) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, padded)
    text = os.fspath(dest)
    local = is_local(text)
    path = text[len("file://") :] if text.startswith("file://") else text
    if local:
        opened = open(path, "wb")  # noqa: SIM115 - closed below, removed on failure
    else:
        fs, remote = resolve_fs(text, storage_options)
        opened = fs.open(remote, "wb")
    try:
        with opened as fh:
            fh.write(head)
            written = 0
            stream = Bitstream(bits_per_frame)
            for batch in batches:
                chunk = b"".join(stream.push(frame) for frame in batch)
                fh.write(chunk)
                written += len(chunk)
            last = stream.close()
            fh.write(last)
            written += len(last)
            if stream.frames != number_of_frames or written != total:
                raise InvalidHeaderError(
                    f"{text}: {stream.frames} BINARY frames written, {number_of_frames} declared"
                )
            if total % 2:
                fh.write(b"\x00")
    except BaseException:
        if local:
            with contextlib.suppress(OSError):
                os.remove(path)
        raise
    return text
