"""Orthogonal selections over a chunk grid: which chunks a selection touches, and where.

A selection holds, per axis, an integer (the axis is dropped), a slice with any step
(negative included) or a 1-D array of integer positions; ``Ellipsis`` and missing
trailing axes expand to full slices, and boolean arrays to the positions they mark.
Axes are indexed independently of each other ("outer" indexing, as dask and zarr's
``oindex`` do): with a single array among slices this is NumPy's own indexing.

For every axis, [`Axis.runs`][dicom_dask.chunks.selection.Axis.runs] lists the chunks
the selection touches along it, each with the part of the chunk it takes and the part
of the output it fills (slices wherever possible), so readers fetch exactly the chunks
a selection touches and paste them without intermediate copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Axis", "Index", "compact", "normalize", "outer_shape", "place", "take"]

#: One axis of a normalized selection.
Index = int | slice | np.ndarray


def _positions(k: Any, n: int) -> np.ndarray:
    arr = np.asarray(k)
    if arr.dtype == bool:
        if arr.ndim != 1 or len(arr) != n:
            raise IndexError(f"boolean index of shape {arr.shape} does not match an axis of {n}")
        return np.flatnonzero(arr)
    if arr.ndim != 1 or (arr.dtype.kind not in "iu" and arr.size):
        raise IndexError(f"only 1-D integer or boolean arrays index an axis, got {k!r:.80}")
    arr = arr.astype(np.int64, copy=True)
    if arr.size and (arr.min() < -n or arr.max() >= n):
        raise IndexError(f"index out of bounds for an axis of {n}")
    arr[arr < 0] += n
    return arr


def normalize(key: Any, shape: tuple[int, ...]) -> tuple[Index, ...]:
    """``key`` as one int, slice (``indices()`` applied; ``None`` stop when a negative
    step runs past position 0) or int64 array per axis.

    Raises ``IndexError`` for anything else (``None``, arrays of more than one
    dimension, out-of-bounds integers, too many indices).
    """
    if not isinstance(key, tuple):
        key = (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: {len(key)} for an array of {len(shape)} dimensions")
    key = key + (slice(None),) * (len(shape) - len(key))
    out: list[Index] = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_):
            k = int(k)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for an axis of {n}")
            out.append(k + n if k < 0 else k)
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            if not len(range(start, stop, step)):
                out.append(slice(0, 0, 1))
            else:  # a negative step past position 0 stops at None, as NumPy means it
                out.append(slice(start, None if stop < 0 else stop, step))
        elif k is None or k is Ellipsis:
            raise IndexError(f"unsupported index {k!r}")
        else:
            out.append(_positions(k, n))
    return tuple(out)


def _slice_length(s: slice) -> int:
    """Elements of a normalized slice (a ``None`` stop: past position 0, stepping down)."""
    return len(range(s.start, -1 if s.stop is None else s.stop, s.step))


def outer_shape(sel: tuple[Index, ...]) -> tuple[int, ...]:
    """Shape of the output of ``sel`` (normalized): dropped axes are left out."""
    return tuple(
        _slice_length(k) if isinstance(k, slice) else len(k) for k in sel if not isinstance(k, int)
    )


def compact(positions: np.ndarray) -> slice | np.ndarray:
    """Positions as a slice when they are evenly spaced (any step), else the array."""
    n = len(positions)
    if n == 0:
        return slice(0, 0, 1)
    first = int(positions[0])
    if n == 1:
        return slice(first, first + 1, 1)
    step = int(positions[1]) - first
    last = int(positions[-1])
    if step == 0 or last - first != step * (n - 1):
        return positions
    if n > 2 and not np.array_equal(np.diff(positions), np.full(n - 1, step)):
        return positions
    stop = last + (1 if step > 0 else -1)
    return slice(first, stop if stop >= 0 else None, step)


#: ``(chunk index, part of the chunk, part of the output)`` along one axis.
Run = tuple[int, slice | np.ndarray, slice | np.ndarray]


class Axis:
    """One axis of a normalized selection (see
    [`normalize`][dicom_dask.chunks.selection.normalize]).

    An integer becomes a one-element slice with ``drop`` set: readers fill the
    output with that axis kept (length 1) and drop it at the end.
    """

    def __init__(self, index: Index) -> None:
        self.drop = isinstance(index, int)
        if isinstance(index, int):
            index = slice(index, index + 1, 1)
        self.index: slice | np.ndarray = index
        self.n = _slice_length(index) if isinstance(index, slice) else len(index)

    @property
    def contiguous(self) -> bool:
        """Whether the axis is a step-1 slice."""
        return isinstance(self.index, slice) and self.index.step == 1

    def positions(self) -> np.ndarray:
        """Every selected position, in output order."""
        if isinstance(self.index, slice):
            return np.arange(self.index.start, self.index.start + self.index.step * self.n,
                             self.index.step, dtype=np.int64)  # fmt: skip
        return self.index

    def part(self, lo: int, hi: int, *, keep: bool = False) -> Index:
        """The index of output positions ``[lo, hi)`` (an int if the axis is dropped,
        unless ``keep``)."""
        if self.drop and not keep:
            assert isinstance(self.index, slice)
            return int(self.index.start)
        if isinstance(self.index, slice):
            start, step = self.index.start + lo * self.index.step, self.index.step
            stop = start + (hi - lo) * step
            return slice(start, stop if stop >= 0 else None, step)
        return self.index[lo:hi]

    def runs(self, size: int) -> list[Run]:
        """The chunks of ``size`` elements this axis touches, in output order."""
        if self.n == 0:
            return []
        if isinstance(self.index, np.ndarray):
            ids = self.index // size
            out: list[Run] = []
            for k in np.unique(ids).tolist():
                dst = np.flatnonzero(ids == k)
                src = self.index[dst] - k * size
                if len(dst) == dst[-1] - dst[0] + 1:
                    dst_part: slice | np.ndarray = slice(int(dst[0]), int(dst[-1]) + 1)
                else:
                    dst_part = dst
                out.append((int(k), compact(src), dst_part))
            return out
        start, step, n = self.index.start, self.index.step, self.n
        runs: list[Run] = []
        i = 0
        while i < n:
            p = start + step * i
            k = p // size
            if step > 0:  # stay in chunk k while the position is below (k + 1) * size
                hi = min(n, -(-((k + 1) * size - start) // step))
            else:  # positions fall: stay while the position is at least k * size
                hi = min(n, (start - k * size) // -step + 1)
            first = p - k * size
            last = start + step * (hi - 1) - k * size
            stop = last + (1 if step > 0 else -1)
            runs.append((k, slice(first, stop if stop >= 0 else None, step), slice(i, hi)))
            i = hi
        return runs


def place(
    out: np.ndarray,
    dst: tuple[slice | np.ndarray, ...],
    chunk: np.ndarray,
    src: tuple[slice | np.ndarray, ...],
) -> None:
    """``out[dst] = chunk[src]`` with both indexed axis by axis (outer indexing).

    With at most one array on a side NumPy's indexing is outer indexing already;
    otherwise that side goes through ``np.ix_``.
    """
    piece = chunk[_outer(src, chunk.shape)]
    out[_outer(dst, out.shape)] = piece


def _outer(index: tuple[slice | np.ndarray, ...], shape: tuple[int, ...]) -> Any:
    if sum(isinstance(i, np.ndarray) for i in index) <= 1:
        return index
    return np.ix_(
        *[np.arange(n)[i] if isinstance(i, slice) else i for i, n in zip(index, shape, strict=True)]
    )


def take(array: np.ndarray, index: tuple[Index, ...]) -> np.ndarray:
    """``array`` indexed axis by axis (outer indexing); a view when no axis is an array."""
    if not any(isinstance(k, np.ndarray) for k in index):
        return array[index]
    for axis in range(len(index) - 1, -1, -1):  # one axis at a time: NumPy is outer
        k = index[axis]
        if not (isinstance(k, slice) and k == slice(None)):
            array = array[(slice(None),) * axis + (k,)]
    return array
