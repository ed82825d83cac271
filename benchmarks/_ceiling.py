"""The decode ceiling shared by the benchmarks: tiles read with ``os.pread`` at offsets known
beforehand, decoded by the fastest imagecodecs function in 2 threads (already running: starting
them is not timed), pasted into the output."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import dicom_dask
from dicom_dask.enums import FrameEncoding


def _rle_rgb(blob: bytes) -> np.ndarray:
    import imagecodecs

    header = struct.unpack("<16L", blob[:64])
    offsets = [*header[1 : 1 + header[0]], len(blob)]
    out = np.empty((256 * 256, 3), dtype=np.uint8)
    for k in range(3):
        segment = imagecodecs.packbits_decode(blob[offsets[k] : offsets[k + 1]])
        out[:, k] = np.frombuffer(segment, dtype=np.uint8, count=256 * 256)
    return out.reshape(256, 256, 3)


def fastest_decoder(codec: str) -> Callable[[bytes], Any]:
    """The fastest imagecodecs function for ``codec`` (one thread inside each call)."""
    import imagecodecs

    return {
        "jpeg": lambda b: imagecodecs.jpeg8_decode(b, colorspace="YCbCr", outcolorspace="RGB"),
        "j2k": lambda b: imagecodecs.jpeg2k_decode(b, numthreads=1),
        "htj2k": imagecodecs.htj2k_decode,
        "jpegls": imagecodecs.jpegls_decode,
        "rle": _rle_rgb,
    }[codec]


#: The ceiling's 2 decoding threads, started once (as a reader's pool is).
_POOL = ThreadPoolExecutor(2, thread_name_prefix="ceiling")


class Ceiling:
    """Tiles read with ``os.pread`` at known offsets, decoded in 2 threads, pasted."""

    def __init__(self, path: Path, codec: str = "jpeg") -> None:
        level = dicom_dask.open_tiled(path)
        m = level.manifest
        header = np.where(m.encoding[0, 0] == FrameEncoding.ITEMS.value, 8, 0)
        self.offsets = m.offsets[0, 0].astype(np.int64) + header
        self.lengths = m.lengths[0, 0].astype(np.int64) - header
        self.path = path
        self.tile = level.tile_shape
        self.shape = level.matrix_shape
        self.decode = fastest_decoder(codec)

    def read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        th, tw = self.tile
        out = np.empty((h, w, 3), dtype=np.uint8)
        tiles = [
            (r, c)
            for r in range(y0 // th, (y0 + h - 1) // th + 1)
            for c in range(x0 // tw, (x0 + w - 1) // tw + 1)
        ]
        fd = os.open(self.path, os.O_RDONLY)
        decode = self.decode

        def one(rc: tuple[int, int]) -> None:
            r, c = rc
            tile = decode(os.pread(fd, int(self.lengths[r, c]), int(self.offsets[r, c])))
            ys, xs = max(y0, r * th), max(x0, c * tw)
            ye, xe = min(y0 + h, (r + 1) * th), min(x0 + w, (c + 1) * tw)
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = tile[
                ys - r * th : ye - r * th, xs - c * tw : xe - c * tw
            ]

        try:
            list(_POOL.map(one, tiles))
        finally:
            os.close(fd)
        return out
