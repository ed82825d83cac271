"""The zarr v3 codec that decodes DICOM frames: ``dicom_dask.frame``.

It is registered in the ``zarr.codecs`` entry point group, so any zarr reader with
dicom_dask installed (kerchunk references included) decodes DICOM chunks. Native
frames that need no processing use zarr's own ``bytes`` codec instead.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec, ArrayBytesCodecPartialDecodeMixin
from zarr.core.common import parse_named_configuration

from dicom_dask.chunks.decoders import decode_chunk, select_backend
from dicom_dask.chunks.store import DicomStore
from dicom_dask.compat import strip_protocol
from dicom_dask.errors import (
    CorruptFrameError,
    CroppedFrameError,
    CroppedTileWarning,
    DicomDaskError,
)
from dicom_dask.frames.fetch import pread
from dicom_dask.frames.threads import LoopPass, run_in_threads

if TYPE_CHECKING:
    from typing import Self

    from zarr.abc.store import ByteGetter
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer
    from zarr.core.indexing import SelectorTuple

__all__ = ["CODEC_NAME", "DicomFrameCodec", "EdgeCell", "register"]

#: The name under which the codec is registered and written in ``zarr.json``.
CODEC_NAME = "dicom_dask.frame"


@dataclass(frozen=True)
class EdgeCell:
    """Where a chunk lies, for a frame that decodes smaller than the tile grid's cell.

    Attributes
    ----------
    valid : tuple of int
        Per axis of the chunk (the array's axis order), how much of the chunk lies inside
        the array: the chunk's size, or less at the array's end.
    fill_value : int or float
        What the part of the cell the frame does not cover reads as.
    url : str
        The file the bytes come from (warned about once).
    where : str
        The frame or chunk in it, for errors.
    once : str
        Added to ``url`` to tell files apart for the one warning per file, where the
        file is not known.
    """

    valid: tuple[int, ...]
    fill_value: Any
    url: str
    where: str
    once: str = ""


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def _warn_cropped(cell: EdgeCell, got: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Warn once per file (per process) that its edge tiles are stored cropped."""
    with _WARNED_LOCK:
        if cell.url + cell.once in _WARNED:
            return
        _WARNED.add(cell.url + cell.once)
    fill = cell.fill_value
    warnings.warn(
        f"{cell.url}: tiles at the right or bottom edge of the total pixel matrix are stored at "
        f"the size the matrix leaves them (a frame of {got[0]} x {got[1]} pixels, rows x "
        f"columns, where Rows x Columns is {expected[0]} x {expected[1]}); each is pasted "
        f"in place and the rest of its tile reads as the fill value {fill!r}",
        CroppedTileWarning,
        stacklevel=2,
    )


@dataclass(frozen=True)
class DicomFrameCodec(ArrayBytesCodec, ArrayBytesCodecPartialDecodeMixin):
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

    def decode_bytes(
        self,
        data: bytes | memoryview,
        *,
        transpose: bool = True,
        edge: Callable[[], EdgeCell | None] | None = None,
    ) -> np.ndarray:
        """Decode one chunk's bytes to ``(frames, rows, columns[, samples])`` (sync).

        With ``order`` set, the result is the chunk in its stored axis order: a
        contiguous copy, or with ``transpose=False`` a transposed view.

        A frame that decodes to fewer rows or columns than *Rows* and *Columns* raises
        [`CroppedFrameError`][dicom_dask.errors.CroppedFrameError], unless ``edge`` (called
        only then) places the chunk at the right or bottom end of the array and the frame
        has exactly the rows and columns the array leaves there: such a frame is pasted
        at the cell's origin, the rest filled with the cell's fill value, with one
        [`CroppedTileWarning`][dicom_dask.errors.CroppedTileWarning] per file.
        """
        try:
            arr = decode_chunk(data, self._config)
        except CroppedFrameError as exc:
            cell = None if edge is None else edge()
            if cell is None:
                raise
            arr = self._paste_edge(exc, cell)
        if arr.shape[0] < self.frames:  # the last chunk of unaligned 1-bit frames
            pad = np.zeros((self.frames - arr.shape[0], *arr.shape[1:]), dtype=arr.dtype)
            arr = np.concatenate([arr, pad])
        if self.order is not None:  # frames == 1: the chunk's other axes have length 1
            stored = (1,) * (len(self.order) - arr.ndim + 1) + arr.shape[1:]
            arr = arr.reshape(stored).transpose(self._inverse)
            if transpose:
                arr = np.ascontiguousarray(arr)
        return arr

    def _paste_edge(self, exc: CroppedFrameError, cell: EdgeCell) -> np.ndarray:
        """The cell of a cropped frame: the frame at its origin, the rest ``fill_value``;
        raises [`CroppedFrameError`][dicom_dask.errors.CroppedFrameError] naming the file and
        frame when the frame is not what the array's end leaves of the cell."""
        stored = cell.valid if self.order is None else tuple(cell.valid[i] for i in self.order)
        axis = len(stored) - (3 if self.samples_per_pixel > 1 else 2)
        left = stored[axis : axis + 2]  # rows, columns of the cell inside the array
        frame = exc.frame
        got, expected = frame.shape[1:3], exc.expected[:2]
        if not all(g in (e, n) for g, e, n in zip(got, expected, left, strict=True)):
            raise CroppedFrameError(
                f"{cell.url}: {cell.where}: {exc}; a smaller frame is accepted only at the "
                "right or bottom edge of the total pixel matrix, cropped to what the matrix "
                f"leaves (here {left[0]} x {left[1]}, rows x columns)",
                expected=exc.expected,
            ) from exc
        full = np.full((frame.shape[0], *exc.expected), cell.fill_value, dtype=frame.dtype)
        full[:, : got[0], : got[1]] = frame
        _warn_cropped(cell, got, expected)
        return full

    @cached_property
    def _inverse(self) -> tuple[int, ...]:
        assert self.order is not None
        return tuple(int(i) for i in np.argsort(self.order))

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        """The codec of one array: it keeps the array's shape, to place chunks whose
        frame decodes smaller than *Rows* x *Columns* (see `decode_bytes`).

        zarr calls this as it opens the array, before it picks the array's codec pipeline:
        dicom_dask's pipeline is selected then, unless another one is configured (see
        [`use_by_default`][dicom_dask.chunks.pipeline.use_by_default])."""
        from dicom_dask.chunks.pipeline import use_by_default

        use_by_default()  # zarr picks the array's pipeline next: ours, unless one is named
        evolved = copy.copy(self)
        # zarr evolves the codecs of the array's metadata with the array's shape; zarr
        # >= 3.3 then evolves them again with the chunk shape when it builds the codec
        # pipeline: the first shape seen is the array's, kept
        if getattr(self, "_array_shape", None) is None:
            object.__setattr__(evolved, "_array_shape", tuple(int(n) for n in array_spec.shape))
        return evolved

    def _edge(self, byte_getter: Any, chunk_spec: ArraySpec) -> Callable[[], EdgeCell | None]:
        """Where the chunk of ``byte_getter`` lies (see `EdgeCell`), worked out when a
        frame decodes cropped: from its key (``.../c/i/j/k``), the chunk shape and the
        array's shape."""

        def cell() -> EdgeCell | None:
            shape = getattr(self, "_array_shape", None)
            key = str(getattr(byte_getter, "path", ""))
            parts = key.split("/")
            if shape is None or len(parts) <= len(shape):
                return None
            tail = parts[len(parts) - len(shape) :]
            if parts[-len(shape) - 1] != "c" or not all(p.isdigit() for p in tail):
                return None
            valid = tuple(
                max(0, min(c, n - int(i) * c))
                for i, c, n in zip(tail, chunk_spec.shape, shape, strict=True)
            )
            url, where = _describe_chunk(getattr(byte_getter, "store", None), key)
            return EdgeCell(valid, chunk_spec.fill_value, url, where)

        return cell

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        arr = self.decode_bytes(chunk_bytes.as_numpy_array().data)
        dtype = chunk_spec.dtype.to_native_dtype()
        arr = np.ascontiguousarray(arr, dtype=dtype).reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(arr)  # type: ignore[arg-type]

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    # -- partial decoding: zarr hands over the chunk's key and the part it needs ------
    def _decode_select(
        self,
        data: bytes | memoryview | None,
        selection: SelectorTuple,
        chunk_spec: ArraySpec,
        *,
        contiguous: bool = True,
        byte_getter: Any = None,
    ) -> NDBuffer | None:
        if data is None:
            return None
        edge = None if byte_getter is None else self._edge(byte_getter, chunk_spec)
        arr = self.decode_bytes(data, transpose=contiguous, edge=edge)
        dtype = chunk_spec.dtype.to_native_dtype()
        arr = np.asarray(arr, dtype=dtype).reshape(chunk_spec.shape)[selection]
        if contiguous:
            arr = np.ascontiguousarray(arr)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(arr)  # type: ignore[arg-type]

    def _read_sync(
        self, byte_getter: ByteGetter, chunk_spec: ArraySpec
    ) -> bytes | memoryview | None:
        read = _local_reader(byte_getter)
        if read is not None:
            return read()
        chunk_bytes = byte_getter.get_sync(prototype=chunk_spec.prototype)  # type: ignore[attr-defined]
        return None if chunk_bytes is None else chunk_bytes.as_numpy_array().data

    def _decode_partial_sync(
        self, byte_getter: ByteGetter, selection: SelectorTuple, chunk_spec: ArraySpec
    ) -> NDBuffer | None:
        """Read and decode one chunk in the calling thread (zarr's FusedCodecPipeline),
        returning ``selection`` of it; zarr pastes it in the same thread, so a
        transposed view is pasted directly instead of being copied first."""
        data = self._read_sync(byte_getter, chunk_spec)
        return self._decode_select(
            data, selection, chunk_spec, contiguous=False, byte_getter=byte_getter
        )

    def _read_decode_select(
        self,
        read: Callable[[], bytes | None],
        selection: SelectorTuple,
        chunk_spec: ArraySpec,
        byte_getter: Any = None,
    ) -> NDBuffer | None:
        return self._decode_select(read(), selection, chunk_spec, byte_getter=byte_getter)

    async def _decode_partial_single(
        self, byte_getter: ByteGetter, selection: SelectorTuple, chunk_spec: ArraySpec
    ) -> NDBuffer | None:
        # A chunk is one frame: it is read and decoded whole, and only ``selection`` of it
        # goes back to zarr. From a DicomStore with the chunk on the local disk, reading
        # joins decoding in the worker thread; any other store is awaited as usual. The
        # chunk goes back contiguous: zarr pastes it in its event loop.
        read = _local_reader(byte_getter)
        if read is not None:
            return await _IN_THREADS.submit(
                partial(self._read_decode_select, read, selection, chunk_spec, byte_getter)
            )
        chunk_bytes = await byte_getter.get(prototype=chunk_spec.prototype)
        if chunk_bytes is None:
            return None
        data = chunk_bytes.as_numpy_array().data
        return await _IN_THREADS.submit(
            partial(self._decode_select, data, selection, chunk_spec, byte_getter=byte_getter)
        )

    async def decode_partial(
        self, batch_info: Iterable[tuple[ByteGetter, SelectorTuple, ArraySpec]]
    ) -> Iterable[NDBuffer | None]:
        # docstring inherited
        batch = list(batch_info)
        if len(batch) == 1:  # zarr's default batch size: no second task per chunk
            return [await self._decode_partial_single(*batch[0])]
        readers = [_local_reader(byte_getter) for byte_getter, *_ in batch]
        local = [read for read in readers if read is not None]
        if len(local) == len(batch):
            # zarr's ``codec_pipeline.batch_size`` > 1: the batch is split among threads
            return await asyncio.gather(
                *(
                    _IN_THREADS.submit(
                        partial(self._read_decode_select, read, selection, spec, getter)
                    )
                    for read, (getter, selection, spec) in zip(local, batch, strict=True)
                )
            )
        stores = {id(getattr(byte_getter, "store", None)) for byte_getter, *_ in batch}
        store = getattr(batch[0][0], "store", None)
        if len(stores) == 1 and store is not None:
            # the batch's bytes in a few calls: a DicomStore merges neighbouring remote
            # tiles into one request, an fsspec store (kerchunk references) merges
            # neighbouring ranges of a file; decoding starts as each part arrives
            part = len(batch) if isinstance(store, DicomStore) else FETCH_PART
            gate = asyncio.Semaphore(FETCH_PARTS)

            async def fetch_decode(
                items: list[tuple[ByteGetter, SelectorTuple, ArraySpec]],
            ) -> list[NDBuffer | None]:
                async with gate:
                    datas = await store.get_partial_values(
                        items[0][2].prototype,
                        [(byte_getter.path, None) for byte_getter, *_ in items],  # type: ignore[attr-defined]
                    )
                return await asyncio.gather(
                    *(
                        _IN_THREADS.submit(
                            partial(
                                self._decode_select,
                                None if data is None else data.as_numpy_array().data,
                                selection,
                                spec,
                                byte_getter=getter,
                            )
                        )
                        for data, (getter, selection, spec) in zip(datas, items, strict=True)
                    )
                )

            parts = await asyncio.gather(
                *(fetch_decode(batch[i : i + part]) for i in range(0, len(batch), part))
            )
            return [chunk for chunks in parts for chunk in chunks]
        return await super().decode_partial(batch)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise DicomDaskError(
            f"{CODEC_NAME} only decodes: DICOM-backed arrays are read-only; copy the data "
            "to another zarr array to write it"
        )

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return self._encode_sync(chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{CODEC_NAME} output size is not fixed")


#: Decoding asked for in one pass of zarr's event loop, split into ``threads()`` jobs.
_IN_THREADS: LoopPass[Callable[[], Any]] = LoopPass(run_in_threads)
#: Chunks fetched in one call, and calls in flight, for a batch from another store.
FETCH_PART, FETCH_PARTS = 64, 4


def _describe_chunk(store: Any, key: str) -> tuple[str, str]:
    """``(file, "chunk 'key' (n bytes at offset o)")`` of a chunk of a
    [`DicomStore`][dicom_dask.chunks.store.DicomStore] or of kerchunk references, for
    messages; the store and key where the file is not known."""
    url: Any = None
    offset = length = None
    if isinstance(store, DicomStore):
        ref = store.resolve(key)
        if ref is not None:
            url, offset, length = ref.url, ref.offset, ref.length
    else:
        fs = getattr(store, "fs", None)
        references = getattr(fs, "references", None)
        if isinstance(references, dict):
            base = str(getattr(store, "path", "")).rstrip("/")
            part = references.get(f"{base}/{key}" if base else key)
            if isinstance(part, list | tuple) and len(part) == 3:
                url, offset, length = part
    if not isinstance(url, str):
        return f"{type(store).__name__}", f"chunk {key!r}"
    return url, f"chunk {key!r} ({length} bytes at offset {offset})"


def _local_reader(byte_getter: ByteGetter) -> Callable[[], bytes | None] | None:
    """The synchronous reader of a chunk in a local file, else ``None``: a chunk of a
    [`DicomStore`][dicom_dask.chunks.store.DicomStore] on the local disk, or a kerchunk
    reference to a byte range of a local file."""
    store, path = getattr(byte_getter, "store", None), getattr(byte_getter, "path", None)
    if not path:
        return None
    if isinstance(store, DicomStore):
        return store.local_reader(path)
    return _reference_reader(store, path)


def _reference_reader(store: Any, key: str) -> Callable[[], bytes] | None:
    """Read a chunk that fsspec's ``ReferenceFileSystem`` (kerchunk references behind a
    ``zarr.storage.FsspecStore``) maps to ``[path, offset, length]`` of a local file, as
    that filesystem would, in the calling thread; ``None`` for anything else (inline
    data, remote or templated URLs, lazily loaded references), which zarr then reads
    through fsspec as usual."""
    fs = getattr(store, "fs", None)
    if not isinstance(getattr(fs, "references", None), dict):
        return None
    # imported only here: fsspec's reference module costs ~4 ms to import
    from fsspec.core import split_protocol
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.implementations.reference import ReferenceFileSystem

    if not isinstance(fs, ReferenceFileSystem):
        return None
    base = str(getattr(store, "path", "")).rstrip("/")
    name = strip_protocol(fs, f"{base}/{key}" if base else key)
    part = fs.references.get(name)
    if not (isinstance(part, list | tuple) and len(part) == 3 and isinstance(part[0], str)):
        return None
    url, offset, size = part[0], int(part[1]), int(part[2])
    target = fs.fss.get(split_protocol(url)[0])
    if not isinstance(getattr(target, "sync_fs", target), LocalFileSystem):
        return None
    local = strip_protocol(LocalFileSystem, url)

    def read() -> bytes:
        data = pread(local, offset, offset + size)
        if len(data) != size:
            raise CorruptFrameError(
                f"{url}: chunk {name!r}: expected {size} bytes at offset {offset}, got {len(data)}"
            )
        return data

    return read


def register() -> None:
    """Register the codec with zarr (done by the entry point; harmless to repeat)."""
    from zarr.registry import register_codec

    register_codec(CODEC_NAME, DicomFrameCodec)
