"""The one decoder of a ``zarr.json`` codec chain: encoded chunk bytes -> the chunk.

Our arrays decode through ``transpose`` codecs (any number, each permuting the shape the
next one sees), then an array-to-bytes codec: zarr's ``bytes`` (native pixels) or
[`DicomFrameCodec`][dicom_dask.chunks.codec.DicomFrameCodec]. The direct reader
(`chunks.reader.ManifestArray`) and the numcodecs form of the chain
(`chunks.numcodec.decode_chain`) both decode with
[`ChunkDecoder`][dicom_dask.chunks.chain.ChunkDecoder]: a chain it cannot decode is a
[`ManifestError`][dicom_dask.errors.ManifestError], bytes that cannot be the chunk a
[`CorruptFrameError`][dicom_dask.errors.CorruptFrameError] naming the chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from dicom_dask.chunks.codec import CODEC_NAME, DicomFrameCodec, EdgeCell
from dicom_dask.chunks.decoders import masked_native
from dicom_dask.errors import CorruptFrameError, ManifestError

__all__ = ["ChunkDecoder", "split_chain"]


def split_chain(codecs: Sequence[dict[str, Any]]) -> tuple[list[tuple[int, ...]], dict[str, Any]]:
    """``(transpose orders, array-to-bytes codec)`` of one of our chains.

    Raises [`ManifestError`][dicom_dask.errors.ManifestError] for any other chain
    (a bytes-to-bytes codec, a codec after the array-to-bytes one, an unknown codec).
    """
    orders: list[tuple[int, ...]] = []
    for i, codec in enumerate(codecs):
        name = codec.get("name")
        if name == "transpose":
            orders.append(tuple(int(k) for k in codec["configuration"]["order"]))
        elif name in ("bytes", CODEC_NAME) and i == len(codecs) - 1:
            return orders, dict(codec)
        else:
            break
    raise ManifestError(
        f"{CODEC_NAME}: cannot express the codec chain {list(codecs)!r} as one decoder "
        "(expected transposes, then 'bytes' or 'dicom_dask.frame')"
    )


class ChunkDecoder:
    """Decode one chunk's bytes with the codec chain of a ``zarr.json`` document.

    Parameters
    ----------
    codecs : list of dict
        The chain: ``transpose`` codecs, then ``bytes`` or ``dicom_dask.frame``.
    chunk_shape : tuple of int
        The chunk shape of the array.
    dtype : numpy dtype
        The decoded data type.

    Attributes
    ----------
    order : tuple of int or None
        The chain's transposes composed into one permutation (``None`` without any):
        the encoded chunk is ``chunk.transpose(order)``.
    shift : int
        Unused high bits to correct after a direct read (native, Bits Stored < Allocated).
    direct : bool
        Whether the stored bytes are the decoded chunk itself (read them straight into
        the output, then correct ``shift`` unused bits in place).
    """

    def __init__(
        self, codecs: Sequence[dict[str, Any]], chunk_shape: Sequence[int], dtype: Any
    ) -> None:
        self.codecs = [dict(c) for c in codecs]
        self.chunk_shape = tuple(int(n) for n in chunk_shape)
        self.dtype = np.dtype(dtype)
        orders, last = split_chain(self.codecs)
        order: tuple[int, ...] | None = None
        for step in orders:  # each transpose permutes what the next codec sees
            order = step if order is None else tuple(order[k] for k in step)
        self.order = order
        self.encoded_shape = (
            self.chunk_shape if order is None else tuple(self.chunk_shape[k] for k in order)
        )
        self._frame_codec = DicomFrameCodec.from_dict(last) if last["name"] == CODEC_NAME else None
        endian = (last.get("configuration") or {}).get("endian", "little")
        self._stored_dtype = self.dtype.newbyteorder("<" if endian == "little" else ">")
        self.shift = 0
        masked = None if self._frame_codec is None else masked_native(self._frame_codec._config)
        if masked is not None and masked[0] == self.dtype.newbyteorder("<"):
            self._stored_dtype, self.shift = masked
        self.direct = (
            (self._frame_codec is None or self.shift > 0)
            and order is None
            and self._stored_dtype == self.dtype.newbyteorder("=")
            and self.dtype.isnative
        )

    def __call__(
        self,
        data: bytes | memoryview,
        edge: Callable[[], EdgeCell | None] | None = None,
        *,
        where: str | None = None,
    ) -> np.ndarray:
        """Decode one chunk, in the array's axis order (possibly a transposed view).

        ``edge`` places a chunk whose frame decodes cropped (see
        [`DicomFrameCodec.decode_bytes`][dicom_dask.chunks.codec.DicomFrameCodec.decode_bytes]);
        its cell is in the array's axis order. ``where`` names the chunk (its file, its
        place) in errors; a caller that names it itself leaves it out.
        """
        order = self.order
        if self._frame_codec is not None:
            if edge is not None and order is not None:  # the codec sees transposed chunks
                edge = partial(_permute_cell, edge, order)
            arr = self._frame_codec.decode_bytes(data, edge=edge)
            arr = np.asarray(arr, dtype=self.dtype).reshape(self.encoded_shape)
        else:
            count = int(np.prod(self.encoded_shape))
            expected = count * self.dtype.itemsize
            if len(data) < expected:
                prefix = "" if where is None else f"{where}: "
                raise CorruptFrameError(
                    f"{prefix}expected {expected} bytes of native pixels for the chunk shape "
                    f"{self.encoded_shape}, got {len(data)}"
                )
            arr = np.frombuffer(data, dtype=self._stored_dtype, count=count)
            arr = arr.reshape(self.encoded_shape)
        if order is not None:
            arr = arr.transpose(np.argsort(order))
        return arr.astype(self.dtype, copy=False)


def _permute_cell(edge: Callable[[], EdgeCell | None], order: tuple[int, ...]) -> EdgeCell | None:
    cell = edge()
    return None if cell is None else replace(cell, valid=tuple(cell.valid[i] for i in order))
