"""DICOM frames as a bytes-to-bytes codec, for zarr v2 references and VirtualiZarr.

Our arrays decode through an array-to-bytes codec (``dicom_dask.frame``, or zarr's
``bytes``) behind optional ``transpose`` codecs. Kerchunk references are zarr v2, whose
codecs are numcodecs codecs from bytes to bytes, and VirtualiZarr's kerchunk writer
keeps only the bytes-to-bytes codecs of an array. So the same chain is also offered as
one codec that takes a chunk's encoded DICOM bytes to the decoded chunk's bytes (C
order, little endian):

* [`DicomChainCodec`][dicom_dask.chunks.numcodec.DicomChainCodec]: a numcodecs codec,
  id ``dicom_dask.frame`` (entry point ``numcodecs.codecs``), for zarr v2 readers;
* [`DicomChainBytesCodec`][dicom_dask.chunks.numcodec.DicomChainBytesCodec]: the zarr v3
  codec ``numcodecs.dicom_dask.frame`` (entry point ``zarr.codecs``), the name under
  which VirtualiZarr turns a v2 filter back into a v3 codec.

The configuration holds the original v3 chain, the chunk shape and the data type, and,
when written with them, the array's shape and fill value: a numcodecs codec is not told
where a chunk lies, so a frame that decodes smaller than *Rows* x *Columns* is accepted
(pasted at the cell's origin, the rest the fill value, with a
[`CroppedTileWarning`][dicom_dask.errors.CroppedTileWarning]) when each of its cropped
sides is what the array's end leaves of a tile; otherwise (or without the array's shape)
it is a [`CroppedFrameError`][dicom_dask.errors.CroppedFrameError].
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from zarr.abc.codec import BytesBytesCodec

from dicom_dask.chunks.chain import ChunkDecoder, split_chain
from dicom_dask.chunks.codec import CODEC_NAME, EdgeCell
from dicom_dask.errors import DicomDaskError

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer

__all__ = [
    "V3_NAME",
    "DicomChainBytesCodec",
    "DicomChainCodec",
    "chain_filter",
    "decode_chain",
    "register",
]

#: The zarr v3 name of the bytes-to-bytes form (numcodecs ids get this prefix in v3).
V3_NAME = "numcodecs." + CODEC_NAME


def chain_filter(
    codecs: list[dict[str, Any]],
    chunk_shape: tuple[int, ...],
    data_type: str,
    *,
    shape: Sequence[int] | None = None,
    fill_value: Any = None,
) -> dict[str, Any]:
    """The numcodecs configuration (``{"id": "dicom_dask.frame", ...}``) of a v3 chain;
    ``shape`` and ``fill_value`` (the array's) are written when given."""
    split_chain(codecs)  # validate now, not at the first read
    config: dict[str, Any] = {
        "id": CODEC_NAME,
        "codecs": [dict(c) for c in codecs],
        "chunk_shape": [int(n) for n in chunk_shape],
        "data_type": str(np.dtype(data_type).name),
    }
    if shape is not None:
        config["shape"] = [int(n) for n in shape]
    if fill_value is not None:
        config["fill_value"] = fill_value
    return config


def decode_chain(
    data: bytes | memoryview,
    codecs: list[dict[str, Any]],
    chunk_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    *,
    shape: Sequence[int] | None = None,
    fill_value: Any = None,
    owner: object = None,
) -> np.ndarray:
    """Decode one chunk's encoded bytes through a v3 chain to a C-ordered array
    (with the one chain decoder, [`ChunkDecoder`][dicom_dask.chunks.chain.ChunkDecoder]).

    With the array's ``shape``, a frame cropped to what the array's end leaves of a tile
    is pasted into a cell of ``fill_value`` (see the module's description), warned about
    once per ``owner`` (the codec of one array)."""
    decoder = ChunkDecoder(codecs, chunk_shape, dtype)
    edge = None
    if shape is not None:
        # per axis, what the array's end leaves of a chunk: the only size a cropped side may have
        ends = tuple(n % c or c for n, c in zip(shape, chunk_shape, strict=True))
        fill = 0 if fill_value is None else fill_value
        cell = EdgeCell(ends, fill, _UNKNOWN, "a chunk", once=f"#{id(owner)}")
        edge = partial(_same, cell)
    arr = decoder(data, edge=edge, where=_UNKNOWN)
    return np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<"))


#: What a numcodecs codec can say of the file a chunk comes from.
_UNKNOWN = f"{CODEC_NAME} (numcodecs: the file is not known to the codec)"


def _same(cell: EdgeCell) -> EdgeCell:
    return cell


class DicomChainCodec(Codec):
    """numcodecs codec ``dicom_dask.frame``: encoded DICOM chunk -> decoded chunk bytes.

    Parameters
    ----------
    codecs : list of dict
        The array's zarr v3 chain (``transpose`` codecs, then ``bytes`` or
        ``dicom_dask.frame``).
    chunk_shape : list of int
        The chunk shape of the array.
    data_type : str
        The decoded data type (written little endian).
    shape : list of int, optional
        The array's shape (to accept edge tiles stored cropped).
    fill_value : int or float, optional
        The array's fill value (what the rest of a cropped edge tile's cell reads as).
    """

    codec_id = CODEC_NAME

    def __init__(
        self,
        codecs: list[dict[str, Any]],
        chunk_shape: list[int],
        data_type: str,
        shape: list[int] | None = None,
        fill_value: Any = None,
    ) -> None:
        self.codecs = [dict(c) for c in codecs]
        self.chunk_shape = [int(n) for n in chunk_shape]
        self.data_type = str(data_type)
        self.shape = None if shape is None else [int(n) for n in shape]
        self.fill_value = fill_value
        split_chain(self.codecs)

    def get_config(self) -> dict[str, Any]:
        """The codec's JSON configuration."""
        return chain_filter(
            self.codecs,
            tuple(self.chunk_shape),
            self.data_type,
            shape=self.shape,
            fill_value=self.fill_value,
        )

    def decode(self, buf: Any, out: Any = None) -> Any:
        """Decode one chunk; the result is the chunk's values in C order."""
        data = np.ascontiguousarray(np.frombuffer(buf, dtype=np.uint8)).data
        arr = decode_chain(
            data,
            self.codecs,
            tuple(self.chunk_shape),
            np.dtype(self.data_type),
            shape=self.shape,
            fill_value=self.fill_value,
            owner=self,
        )
        if out is not None:
            np.copyto(np.asarray(out).reshape(-1).view(np.uint8), arr.reshape(-1).view(np.uint8))
            return out
        return arr

    def encode(self, buf: Any) -> Any:
        """Not supported: DICOM-backed arrays are read-only."""
        raise DicomDaskError(f"{CODEC_NAME} only decodes: DICOM-backed arrays are read-only")

    def __repr__(self) -> str:
        return f"DicomChainCodec(chunk_shape={self.chunk_shape}, data_type={self.data_type!r})"


@dataclass(frozen=True)
class DicomChainBytesCodec(BytesBytesCodec):
    """zarr v3 codec ``numcodecs.dicom_dask.frame``: the chain as bytes to bytes.

    It follows zarr's ``bytes`` codec (little endian) in a v3 chain, which is how
    VirtualiZarr rebuilds v3 metadata from a kerchunk ``.zarray``.
    """

    is_fixed_size = False

    codecs: tuple[dict[str, Any], ...]
    chunk_shape: tuple[int, ...]
    data_type: str
    shape: tuple[int, ...] | None
    fill_value: Any

    def __init__(
        self,
        *,
        codecs: list[dict[str, Any]],
        chunk_shape: list[int],
        data_type: str,
        shape: list[int] | None = None,
        fill_value: Any = None,
    ) -> None:
        split_chain(list(codecs))
        object.__setattr__(self, "codecs", tuple(dict(c) for c in codecs))
        object.__setattr__(self, "chunk_shape", tuple(int(n) for n in chunk_shape))
        object.__setattr__(self, "data_type", str(data_type))
        object.__setattr__(self, "shape", None if shape is None else tuple(int(n) for n in shape))
        object.__setattr__(self, "fill_value", fill_value)

    def __hash__(self) -> int:
        return hash((repr(self.codecs), self.chunk_shape, self.data_type, self.shape))

    @property
    def codec_config(self) -> dict[str, Any]:
        """The numcodecs form (VirtualiZarr writes this to kerchunk ``.zarray`` filters)."""
        return chain_filter(
            list(self.codecs),
            self.chunk_shape,
            self.data_type,
            shape=self.shape,
            fill_value=self.fill_value,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a v3 entry ``{"name": "numcodecs.dicom_dask.frame", ...}``."""
        if data.get("name") != V3_NAME:
            raise ValueError(f"expected a codec named {V3_NAME!r}, got {data.get('name')!r}")
        config = {k: v for k, v in dict(data.get("configuration") or {}).items() if k != "id"}
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """The v3 entry."""
        config = self.codec_config
        config.pop("id")
        return {"name": V3_NAME, "configuration": config}

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        data = chunk_bytes.as_numpy_array().data
        arr = decode_chain(
            data,
            list(self.codecs),
            self.chunk_shape,
            np.dtype(self.data_type),
            shape=self.shape,
            fill_value=self.fill_value,
            owner=self,
        )
        return chunk_spec.prototype.buffer.from_bytes(arr.reshape(-1).view(np.uint8).data)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise DicomDaskError(f"{V3_NAME} only decodes: DICOM-backed arrays are read-only")

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{V3_NAME} output size is not fixed")


def register() -> None:
    """Register both forms with numcodecs and zarr (the entry points do this for
    installed packages; harmless to repeat)."""
    from numcodecs.registry import codec_registry, register_codec
    from zarr.registry import register_codec as register_zarr_codec

    if codec_registry.get(CODEC_NAME) is not DicomChainCodec:
        register_codec(DicomChainCodec)
    register_zarr_codec(V3_NAME, DicomChainBytesCodec)
