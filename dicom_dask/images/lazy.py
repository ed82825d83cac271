"""Dask helpers shared by the front ends (imported only where dask is wanted)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dicom_dask.images.transforms import FrameTransformer, apply_block

__all__ = [
    "FusedTransform",
    "frames_per_block",
    "fused_transformed_dask",
    "reader_dask",
    "transformed_dask",
]


def frames_per_block(shape: tuple[int, ...], dtype: Any, chunk_bytes: int) -> int:
    """Whole frames (axis 0 of ``shape``) in a block of about ``chunk_bytes``."""
    per_frame = int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    return max(1, min(shape[0], chunk_bytes // max(per_frame, 1)))


def reader_dask(reader: Any, chunks: Any, name: str | None = None) -> Any:
    """A dask array over ``reader`` (``shape``, ``dtype``, ``ndim`` and ``__getitem__``
    of a tuple of step-1 slices), one task per block; ``meta`` is declared, so nothing
    is read to find the dtype."""
    import dask.array as da

    return da.from_array(
        reader,
        chunks=chunks,
        meta=np.empty((0,) * reader.ndim, dtype=reader.dtype),
        asarray=False,
        fancy=False,
        name=name,
    )


def transformed_dask(array: Any, transformer: FrameTransformer, roles: str) -> Any:
    """``array`` with each block mapped through `apply_block`.

    The transformer (header datasets and switches) is one node of the graph, shared
    by every task; the output dtype and shape are declared, nothing is computed.
    """
    import dask
    import dask.array as da

    dtype = np.dtype(transformer.options.dtype)
    extra: dict[str, Any] = {}
    if transformer.adds_samples:  # palette colour: a new RGB axis
        extra = {"new_axis": array.ndim, "chunks": (*array.chunks, (3,))}
    ndim = array.ndim + (1 if transformer.adds_samples else 0)
    return da.map_blocks(
        apply_block,
        array,
        dask.delayed(transformer, pure=True),
        roles,
        dtype=dtype,
        meta=np.empty((0,) * ndim, dtype=dtype),
        **extra,
    )


class FusedTransform:
    """Stored values read and transformed slab by slab, for ``dask.array.from_array``.

    A block is read a few frames at a time into one small scratch buffer (about
    ``slab_bytes``), and each slab is transformed into the output while it is still in
    the CPU cache: the stored values never make a round trip through main memory.
    Pixels equal ``apply_block`` over the stored block (same function, same frames).
    With ``threads`` > 1 (as ``Volume.compute`` sets it), a selection is split along
    axis 0 between that many threads, each with its own scratch buffer.
    """

    def __init__(
        self, reader: Any, transformer: FrameTransformer, roles: str, slab_bytes: int = 1 << 19
    ) -> None:
        self.reader = reader
        self.transformer = transformer
        self.roles = roles
        self.slab_bytes = int(slab_bytes)
        tail = (3,) if transformer.adds_samples else ()
        self.shape = (*reader.shape, *tail)
        self.dtype = np.dtype(transformer.options.dtype)
        self.ndim = len(self.shape)
        #: Threads filling one selection; the name of the dask array built on this.
        self.threads = 1
        self.array_name = ""

    def is_local(self) -> bool:
        """Whether every frame lies in a file on the local disk."""
        return bool(self.reader.is_local())

    def __getitem__(self, key: Any) -> np.ndarray:
        sel = self.reader._normalize(key[: self.reader.ndim] if isinstance(key, tuple) else key)
        shape = tuple(s.stop - s.start for s in sel)
        tail = self.shape[self.reader.ndim :]
        out = np.empty(shape + tail, dtype=self.dtype)
        if 0 in shape:
            return out
        parts = max(1, min(self.threads, shape[0]))
        bounds = np.linspace(sel[0].start, sel[0].stop, parts + 1).round().astype(int)
        spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
        if len(spans) > 1:
            from dicom_dask.chunks.reader import _pool

            for _ in _pool().map(lambda span: self._fill(span, sel, out), spans):
                pass
        else:
            self._fill(spans[0], sel, out)
        return out

    def _fill(self, span: tuple[int, int], sel: tuple[slice, ...], out: np.ndarray) -> None:
        """Frames ``span`` (a part of ``sel[0]``) of the selection, into ``out``."""
        shape = tuple(s.stop - s.start for s in sel)
        per_frame = int(np.prod(shape[1:])) * self.reader.dtype.itemsize
        step = max(1, self.slab_bytes // max(per_frame, 1))
        scratch = np.empty((min(step, span[1] - span[0]), *shape[1:]), dtype=self.reader.dtype)
        rest = [(s.start, s.stop) for s in sel[1:]]
        first = sel[0].start
        for lo in range(span[0], span[1], step):
            hi = min(lo + step, span[1])
            slab = self.reader.read((slice(lo, hi), *sel[1:]), out=scratch[: hi - lo])
            info = {None: {"array-location": [(lo, hi), *rest]}}
            apply_block(slab, self.transformer, self.roles, info, out=out[lo - first : hi - first])


def fused_transformed_dask(
    reader: Any,
    array: Any,
    transformer: FrameTransformer,
    roles: str,
    name: str,
    *,
    chunk_bytes: int | None = None,
) -> tuple[Any, FusedTransform]:
    """Like `transformed_dask` over ``array`` (built on ``reader``), with each block
    read and transformed slab by slab (`FusedTransform`). With ``chunk_bytes``
    the blocks hold about that many *output* bytes (whole frames along axis 0).
    Returns the dask array and the `FusedTransform` behind it."""
    fused = FusedTransform(reader, transformer, roles)
    chunks = array.chunks + (((3,),) if transformer.adds_samples else ())
    if chunk_bytes:  # dask splits axis 0 into blocks of that many frames
        chunks = (frames_per_block(fused.shape, fused.dtype, chunk_bytes), *chunks[1:])
    array = reader_dask(fused, chunks, name)
    fused.array_name = array.name  # what Volume.compute checks before reading directly
    return array, fused
