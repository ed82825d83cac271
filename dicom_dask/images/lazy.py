"""Dask helpers shared by the front ends (imported only where dask is wanted).

Every dask array the library returns is a [`ReaderArray`][dicom_dask.images.lazy.ReaderArray]:
a dask array over an array-like *reader* (the chunk manifest reader, or the reader
that transforms while it reads) that keeps, per axis of the reader, which positions
it shows. Slicing one composes the selection and makes a new graph whose tasks ask
the reader for exactly the selected elements, so only the frames and tiles a
selection touches are read, whatever the selection (integers, slices with any step,
integer lists, ``Ellipsis``). ``compute()`` on the threaded or synchronous scheduler
reads the selection straight into one output array, with no assembly copy.

Why not plain ``dask.array.from_array``: with ``fancy=False`` dask's slice fusion
(``dask.array.optimization._optimize_slices``) gives up on every plain slice, so a
slice computes whole blocks and cuts them; with ``fancy=True`` it fuses slices with
positive steps but not negative steps or integer arrays (``fuse_slice`` raises), and
reductions still go through the graph. ``tests/images/test_slicing.py`` checks dask's
behaviour, so this can be revisited when dask changes.
"""

from __future__ import annotations

import bisect
import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.array.core import getter, normalize_chunks
from dask.base import is_dask_collection, tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.system import CPU_COUNT

from dicom_dask.chunks.selection import Axis, Index, compact, normalize, take
from dicom_dask.compat import dask_meta, task_spec
from dicom_dask.images.transforms import FrameTransformer, apply_block

__all__ = [
    "FusedTransform",
    "ReaderArray",
    "frames_per_block",
    "fused_transformed_dask",
    "reader_dask",
    "transformed_dask",
]


#: The positions one axis of a ``ReaderArray`` shows: evenly spaced ones as a ``range``
#: (sliced, measured and turned into a slice in constant time), any others as an int64
#: array.
Positions = range | np.ndarray


def _pick(positions: Positions, k: Index) -> int | Positions:
    """``positions[k]`` for one axis of a normalized selection (see
    [`normalize`][dicom_dask.chunks.selection.normalize])."""
    if isinstance(k, int):
        return int(positions[k])
    if isinstance(positions, range):
        if isinstance(k, slice):
            return positions[k]
        return positions.start + positions.step * k  # int64 positions, as the array would give
    return positions[k]


def _as_key(positions: Positions) -> Index:
    """``positions`` as the reader takes them: a slice when evenly spaced (as
    [`compact`][dicom_dask.chunks.selection.compact] makes it), else the array."""
    if not isinstance(positions, range):
        return compact(positions)
    if not len(positions):
        return slice(0, 0, 1)
    first = positions[0]
    if len(positions) == 1:
        return slice(first, first + 1, 1)
    stop = positions[-1] + (1 if positions.step > 0 else -1)
    return slice(first, stop if stop >= 0 else None, positions.step)


def _selection_key(selection: tuple[int | Positions, ...]) -> tuple[Index, ...]:
    """``selection`` as one key of the reader."""
    return tuple(s if isinstance(s, int) else _as_key(s) for s in selection)


def frames_per_block(shape: tuple[int, ...], dtype: Any, chunk_bytes: int) -> int:
    """Whole frames (axis 0 of ``shape``) in a block of about ``chunk_bytes``."""
    per_frame = int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    return max(1, min(shape[0], chunk_bytes // max(per_frame, 1)))


class ReaderArray(da.Array):
    """A dask array over a reader whose slices read only what they select.

    Built by [`reader_dask`][dicom_dask.images.lazy.reader_dask]. ``x[index]`` with
    integers, slices (any step), one 1-D integer or boolean array and ``Ellipsis``
    returns another ``ReaderArray`` whose tasks each call the reader once with their
    part of the selection (axes are indexed independently, as in dask). Anything
    else (``None``, dask arrays, several arrays) goes through dask's own indexing.

    ``compute()`` with no options, or only ``scheduler`` (threads or synchronous)
    and ``num_workers``, and no dask callbacks active, reads the whole selection with
    one call of the reader (which decodes in threads) into one array: the same
    values as the graph, without dask assembling the blocks. Other schedulers
    (distributed, processes) run the graph.
    """

    _reader: Any
    _reader_key: str
    _selection: tuple[int | Positions, ...]
    #: Block boundaries of the reader's axes (0 first, the axis length last).
    _edges: tuple[np.ndarray, ...]
    #: ``_selection`` with evenly spaced positions as slices.
    _key: tuple[Index, ...]

    def _setup(
        self,
        reader: Any,
        reader_key: str,
        selection: tuple[int | Positions, ...],
        edges: tuple[np.ndarray, ...],
        key: tuple[Index, ...] | None = None,
    ) -> ReaderArray:
        self._reader = reader
        self._reader_key = reader_key
        self._selection = selection
        self._edges = edges
        self._key = _selection_key(selection) if key is None else key
        return self

    def __reduce__(self) -> Any:
        return (
            _rebuild,
            (
                self.dask,
                self.name,
                self.chunks,
                dask_meta(self),
                self._reader,
                self._reader_key,
                self._selection,
                self._edges,
            ),
        )

    @property
    def reader(self) -> Any:
        """The array-like every task of this array reads through."""
        return self._reader

    def reader_key(self) -> tuple[Index, ...]:
        """The selection as one key of the reader (what ``compute()`` reads)."""
        return self._key

    def __getitem__(self, index: Any) -> Any:
        parts = index if isinstance(index, tuple) else (index,)
        if any(is_dask_collection(k) for k in parts):
            return super().__getitem__(index)
        try:
            sel = normalize(index, self.shape)
        except IndexError:
            return super().__getitem__(index)  # dask handles None, or raises its own error
        if sum(isinstance(k, np.ndarray) for k in sel) > 1:
            return super().__getitem__(index)  # nd fancy indexing: as dask does
        if all(
            isinstance(k, slice) and (k.start, k.stop, k.step) == (0, n, 1)
            for k, n in zip(sel, self.shape, strict=True)
        ):
            return self
        new: list[int | Positions] = []
        keys = iter(sel)
        for s in self._selection:
            new.append(s if isinstance(s, int) else _pick(s, next(keys)))
        return _build(self._reader, self._reader_key, tuple(new), self._edges, self.name)

    def compute(self, **kwargs: Any) -> Any:
        """The values as a NumPy array (see the class notes for the direct read)."""
        threads = _direct_threads(self, kwargs)
        if threads is None or not hasattr(self._reader, "threads"):
            return super().compute(**kwargs)
        reader = copy.copy(self._reader)
        reader.threads = threads
        return np.asarray(reader[self.reader_key()])


def _direct_threads(array: ReaderArray, kwargs: dict[str, Any]) -> int | None:
    """Threads for a direct read of ``array``, or None when the graph must run."""
    from dask.callbacks import Callback

    if set(kwargs) - {"scheduler", "num_workers"} or Callback.active:
        return None
    import dask.local
    import dask.threaded

    try:
        get = dask.base.get_scheduler(scheduler=kwargs.get("scheduler"), collections=[array])
    except ValueError:
        return None
    if get is dask.local.get_sync:
        return 1
    if get is dask.threaded.get:
        workers = kwargs.get("num_workers") or dask.config.get("num_workers", None)
        return int(workers or CPU_COUNT)  # dask's threaded default
    return None


def _rebuild(
    graph: Any,
    name: str,
    chunks: Any,
    meta: Any,
    reader: Any,
    reader_key: str,
    selection: tuple[int | Positions, ...],
    edges: tuple[np.ndarray, ...],
) -> ReaderArray:
    array = ReaderArray(graph, name, chunks, meta=meta)
    return array._setup(reader, reader_key, selection, edges)


def _axis_chunks(positions: Positions, edges: np.ndarray) -> tuple[int, ...]:
    """Output chunks along an axis: a new chunk wherever the source block changes; an
    unsorted array as [`_unsorted_chunks`][dicom_dask.images.lazy._unsorted_chunks]
    makes them."""
    if not len(positions):
        return (0,)
    if isinstance(positions, range):
        return _range_chunks(positions, edges)
    block = np.searchsorted(edges[1:-1], positions, side="right")
    steps = np.diff(block)
    if (steps < 0).any() and (steps > 0).any():
        return _unsorted_chunks(block, max(1, int(np.diff(edges).max())))
    cuts = np.flatnonzero(steps != 0) + 1
    bounds = [0, *cuts.tolist(), len(positions)]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


def _unsorted_chunks(block: np.ndarray, size: int) -> tuple[int, ...]:
    """Output chunks of unsorted positions whose source blocks are ``block``.

    Each chunk holds every visit of the source blocks it touches, so that each block is
    read by one task (a task reads each chunk it needs once, however often it repeats);
    chunks are merged up to ``size`` positions (the largest source block). A stretch that
    revisits blocks over more than ``size`` positions is cut where the block changes
    instead (a repeat of one block is never cut), and a block it revisits is then read
    once per piece.
    """
    n = len(block)
    last = np.zeros(int(block.max()) + 1, dtype=np.int64)
    uniq, first_from_end = np.unique(block[::-1], return_index=True)
    last[uniq] = n - 1 - first_from_end  # the last visit of each block
    reach = np.maximum.accumulate(last[block])
    ends = np.flatnonzero(reach == np.arange(n)) + 1  # no block is visited on both sides
    changes = np.flatnonzero(np.diff(block) != 0) + 1
    pieces: list[int] = []
    start = 0
    for end in ends.tolist():
        if end - start <= size:
            pieces.append(end - start)
        else:  # too long: its runs of one block
            inner = changes[(changes > start) & (changes < end)].tolist()
            pieces.extend(b - a for a, b in itertools.pairwise([start, *inner, end]))
        start = end
    chunks: list[int] = []
    current = 0
    for piece in pieces:  # merged up to ``size``
        if current and current + piece > size:
            chunks.append(current)
            current = 0
        current += piece
    chunks.append(current)
    return tuple(chunks)


def _range_chunks(positions: range, edges: np.ndarray) -> tuple[int, ...]:
    """[`_axis_chunks`][dicom_dask.images.lazy._axis_chunks] of evenly spaced positions,
    from the block boundaries they cross (no array of positions is made)."""
    n, start, step = len(positions), positions.start, positions.step
    low, high = sorted((positions[0], positions[-1]))
    inner = edges[1:-1].tolist()
    crossed = inner[bisect.bisect_right(inner, low) : bisect.bisect_right(inner, high)]
    if step > 0:  # the first position at or past each boundary starts a chunk
        cuts = {-((start - e) // step) for e in crossed}
    else:  # stepping down: the first position below each boundary starts a chunk
        cuts = {(start - e) // -step + 1 for e in crossed}
    bounds = [0, *sorted(cuts), n]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


class _LazyTasks(Mapping[Any, Any]):
    """The tasks of one ``ReaderArray`` layer, made when dask first asks for them.

    Slicing a ``ReaderArray`` or reading it directly (``compute()`` on the threaded
    or synchronous scheduler) never looks at its tasks, so opening a slide and
    reading a corner does not pay for a graph of every block. Pickled (sent to a
    worker), the layer is a plain ``dict``.
    """

    __slots__ = ("_args", "_tasks")

    def __init__(
        self,
        name: str,
        reader_key: str,
        selection: tuple[int | Positions, ...],
        chunks: tuple[tuple[int, ...], ...],
    ) -> None:
        self._args = (name, reader_key, selection, chunks)
        self._tasks: dict[Any, Any] | None = None

    def _materialize(self) -> dict[Any, Any]:
        if self._tasks is None:  # two threads may both build it: the same dict
            self._tasks = _tasks(*self._args)
        return self._tasks

    def __getitem__(self, key: Any) -> Any:
        return self._materialize()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._materialize())

    def __len__(self) -> int:
        return len(self._materialize())

    def __contains__(self, key: object) -> bool:
        return key in self._materialize()

    def __reduce__(self) -> Any:
        return (dict, (self._materialize(),))


def _tasks(
    name: str,
    reader_key: str,
    selection: tuple[int | Positions, ...],
    chunks: tuple[tuple[int, ...], ...],
) -> dict[Any, Any]:
    """One ``getter`` task per block: the reader and the block's part of ``selection``."""
    starts = [np.cumsum((0, *c)).tolist() for c in chunks]
    layer: dict[Any, Any] = {}
    Task, TaskRef, DataNode = task_spec()
    ref = TaskRef(reader_key)
    for block in itertools.product(*[range(len(c)) for c in chunks]):
        index: list[Any] = []
        j = 0
        for s in selection:
            if isinstance(s, int):
                index.append(s)
            else:
                index.append(_as_key(s[starts[j][block[j]] : starts[j][block[j] + 1]]))
                j += 1
        task_key = (name, *block)
        layer[task_key] = Task(task_key, getter, ref, DataNode(None, tuple(index)))
    return layer


def _build(
    reader: Any,
    reader_key: str,
    selection: tuple[int | Positions, ...],
    edges: tuple[np.ndarray, ...],
    parent: str,
    *,
    name: str | None = None,
    chunks: tuple[tuple[int, ...], ...] | None = None,
) -> ReaderArray:
    """A ``ReaderArray`` showing ``selection`` (per reader axis) of ``reader``; its
    blocks are ``chunks`` (default: a block wherever the source block changes)."""
    if chunks is None:
        kept = [(s, e) for s, e in zip(selection, edges, strict=True) if not isinstance(s, int)]
        chunks = tuple(_axis_chunks(s, e) for s, e in kept)
    key = _selection_key(selection)
    if name is None:
        prefix = parent.split("-getitem-")[0]
        name = f"{prefix}-getitem-{tokenize(reader_key, key)}"
    graph = HighLevelGraph(
        {
            reader_key: MaterializedLayer({reader_key: reader}),
            name: MaterializedLayer(_LazyTasks(name, reader_key, selection, chunks)),
        },
        {reader_key: set(), name: {reader_key}},
    )
    meta = np.empty((0,) * len(chunks), dtype=reader.dtype)
    array = ReaderArray(graph, name, chunks, meta=meta)
    return array._setup(reader, reader_key, selection, edges, key)


def reader_dask(reader: Any, chunks: Any, name: str | None = None) -> ReaderArray:
    """A [`ReaderArray`][dicom_dask.images.lazy.ReaderArray] over ``reader``
    (``shape``, ``dtype``, ``ndim``, ``threads`` and an outer-indexing
    ``__getitem__``, see ``ManifestArray``), one task per block of ``chunks`` (as
    dask takes them); ``meta`` is declared, so nothing is read to find the dtype,
    and the tasks are made only when dask asks for them."""
    shape = tuple(int(n) for n in reader.shape)
    normalized = normalize_chunks(
        chunks, shape, dtype=reader.dtype, previous_chunks=getattr(reader, "chunks", None)
    )
    if name is None:
        name = f"array-{tokenize(reader, normalized)}"
    edges = tuple(np.cumsum((0, *c)).astype(np.int64) for c in normalized)
    selection = tuple(range(n) for n in shape)
    return _build(reader, f"original-{name}", selection, edges, name, name=name, chunks=normalized)


def transformed_dask(array: Any, transformer: FrameTransformer, roles: str) -> Any:
    """``array`` with each block mapped through ``apply_block`` (for arrays that are not
    a reader's: a reader's array is transformed while read, see
    [`fused_transformed_dask`][dicom_dask.images.lazy.fused_transformed_dask]).

    The transformer (header datasets and switches) is one node of the graph, shared
    by every task; the output dtype and shape are declared, nothing is computed.
    """
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
    """Stored values read and transformed slab by slab: a reader for
    [`reader_dask`][dicom_dask.images.lazy.reader_dask].

    A selection is read a few frames (positions of axis 0) at a time into one small
    scratch buffer (about ``slab_bytes``), and each slab is transformed into the
    output while it is still in the CPU cache: the stored values never make a round
    trip through main memory. Pixels equal ``apply_block`` over the stored values
    (same function, same frames). Any selection the stored reader takes is taken
    (each frame keeps its own parameters); the samples axis (``s`` in ``roles``) is
    read whole and selected after the transform, which may need all samples. With
    ``threads`` > 1 (as a direct ``compute`` sets it), a selection is split along
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

    def __repr__(self) -> str:
        return f"FusedTransform({self.reader!r}, roles={self.roles!r}, dtype={self.dtype})"

    def is_local(self) -> bool:
        """Whether every frame lies in a file on the local disk."""
        return bool(self.reader.is_local())

    def __getitem__(self, key: Any) -> np.ndarray:
        sel = normalize(key, self.shape)
        n = self.reader.ndim
        axes: list[Axis] = []
        final: list[Index] = []  # applied to the transformed values
        for k, role, size in zip(sel[:n], self.roles, self.reader.shape, strict=True):
            if role == "s":  # every sample is read and transformed, then selected
                axes.append(Axis(slice(0, size, 1)))
                final.append(k)
            else:
                axis = Axis(k)
                axes.append(axis)
                final.append(0 if axis.drop else slice(None))
        final.extend(sel[n:])
        shape = tuple(a.n for a in axes)
        out = np.empty(shape + self.shape[n:], dtype=self.dtype)
        roles = self.roles + "t" * (len(sel) - n)  # t: the palette's added samples
        picked = [k for k, r in zip(sel, roles, strict=True) if r in "st"]
        if 0 in shape or any(Axis(k).n == 0 for k in picked):
            return take(out, tuple(final))  # nothing selected: nothing read
        positions = [
            a.positions() if r == "f" else None for a, r in zip(axes, self.roles, strict=True)
        ]
        parts = max(1, min(self.threads, shape[0]))
        bounds = np.linspace(0, shape[0], parts + 1).round().astype(int).tolist()
        spans = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
        if len(spans) > 1:
            from dicom_dask.frames.threads import pool

            for _ in pool().map(lambda span: self._fill(span, axes, positions, out), spans):
                pass
        else:
            self._fill(spans[0], axes, positions, out)
        return take(out, tuple(final))

    def _fill(
        self,
        span: tuple[int, int],
        axes: list[Axis],
        positions: list[np.ndarray | None],
        out: np.ndarray,
    ) -> None:
        """Output positions ``span`` of axis 0 of the selection ``axes``, into ``out``."""
        shape = tuple(a.n for a in axes)
        per_frame = int(np.prod(shape[1:])) * self.reader.dtype.itemsize
        step = max(1, self.slab_bytes // max(per_frame, 1))
        scratch = np.empty((min(step, span[1] - span[0]), *shape[1:]), dtype=self.reader.dtype)
        rest = tuple(a.index for a in axes[1:])
        for lo in range(span[0], span[1], step):
            hi = min(lo + step, span[1])
            key = (axes[0].part(lo, hi, keep=True), *rest)
            slab = self.reader.read(key, out=scratch[: hi - lo])
            where = [positions[0][lo:hi] if positions[0] is not None else None, *positions[1:]]
            apply_block(slab, self.transformer, self.roles, None, out=out[lo:hi], positions=where)


def fused_transformed_dask(
    reader: Any,
    array: Any,
    transformer: FrameTransformer,
    roles: str,
    name: str,
    *,
    chunk_bytes: int | None = None,
) -> tuple[ReaderArray, FusedTransform]:
    """The transformed ``array`` (built on ``reader``), each selection read and
    transformed slab by slab ([`FusedTransform`][dicom_dask.images.lazy.FusedTransform]):
    slicing it reads only the frames and tiles selected, as on ``array``. With
    ``chunk_bytes`` the blocks hold about that many *output* bytes (whole frames
    along axis 0). Returns the dask array and the ``FusedTransform`` behind it."""
    fused = FusedTransform(reader, transformer, roles)
    chunks = array.chunks + (((3,),) if transformer.adds_samples else ())
    if chunk_bytes:  # dask splits axis 0 into blocks of that many frames
        chunks = (frames_per_block(fused.shape, fused.dtype, chunk_bytes), *chunks[1:])
    out = reader_dask(fused, chunks, name)
    fused.array_name = out.name  # what Volume.compute checks before reading directly
    return out, fused
