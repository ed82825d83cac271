"""The OME-Zarr pyramid as dask tasks: each task writes its block's chunks of several levels.

Used by [`to_ome_zarr`][dicom_dask.integrations.ome_zarr.to_ome_zarr]: a
[`Target`][dicom_dask.integrations.ome_zarr_pyramid.Target] names the destination in
a form that pickles without credentials, and
[`pyramid_graph`][dicom_dask.integrations.ome_zarr_pyramid.pyramid_graph] builds the
graph of one stage after another. One dask task per block of the input writes that
block's chunks of level 0, halves it in place (see
[`downsample`][dicom_dask.integrations.downsample.downsample]) and writes the levels
below while whole chunks fit in the block; only the small remainder (a sixteenth of
the block or less) goes on to the next, much smaller, stage.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.frames.storage import resolve_fs
from dicom_dask.integrations.downsample import downsample
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array
    import zarr

__all__ = ["STAGE_BYTES", "Target", "open_store", "pyramid_graph"]

#: Largest block (bytes) one task of the later, small stages holds.
STAGE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Target:
    """Where the tasks write: pickles as a credential-free URL and a factory (or a token).

    Attributes
    ----------
    url : str
        The group's canonical URL (or local path).
    storage_options : mapping or callable, optional
        What the tasks open it with (a factory, or a token shipped to the workers).
    run : str
        A token of this write: the levels opened by a process are cached per run.
    zarr_format : int
        2 (NGFF 0.4) or 3 (NGFF 0.5).
    """

    url: str
    storage_options: StorageOptions
    run: str
    zarr_format: int
    #: zstd level of the chunks (``None``: stored raw) when the tasks encode them
    #: themselves; ``-1``: zarr's own write path (another codec).
    zstd: int | None = -1
    #: Leave out chunks that hold only the fill value (label and float maps, whose
    #: background is often empty; an image's chunks almost never are, so not checked).
    skip_empty: bool = True


def _async(fs: Any) -> Any:
    """``fs`` as zarr's ``FsspecStore`` wants it: asynchronous."""
    if not fs.async_impl:
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

        return AsyncFileSystemWrapper(fs)
    if not fs.asynchronous:
        return type(fs)(**{**fs.storage_options, "asynchronous": True})
    return fs


def open_store(url: str, storage_options: StorageOptions) -> Any:
    """A writable zarr store over ``url``: a ``LocalStore``, or an ``FsspecStore``."""
    import zarr

    if "://" not in url:
        return zarr.storage.LocalStore(url)
    fs, path = resolve_fs(url, storage_options)
    return zarr.storage.FsspecStore(_async(fs), path=path, read_only=False)


_OPEN: OrderedDict[tuple[str, str, int], Any] = OrderedDict()
_OPEN_LOCK = threading.Lock()


def _level_array(target: Target, level: int) -> zarr.Array:
    """Level ``level`` of the destination, opened once per process and write (one store,
    so one S3 client and its connections, serves every level)."""
    import zarr

    key = (target.url, target.run, level)
    with _OPEN_LOCK:
        found = _OPEN.get(key)
        store = _OPEN.get((target.url, target.run, -1))
    if found is None:
        if store is None:
            store = open_store(target.url, target.storage_options)
            with _OPEN_LOCK:
                _OPEN[(target.url, target.run, -1)] = store
        found = zarr.open_array(
            store, path=str(level), mode="r+", zarr_format=3 if target.zarr_format == 3 else 2
        )
        with _OPEN_LOCK:
            _OPEN[key] = found
            while len(_OPEN) > 64:
                _OPEN.popitem(last=False)
    return found


# -- the pyramid, stage by stage ----------------------------------------------------------------
def _write_stage(
    block: np.ndarray,
    *,
    target: Target,
    first: int,
    count: int,
    returns_next: bool,
    method: str,
    block_info: Any = None,
) -> np.ndarray:
    """Write ``block`` (of level ``first``) and its halves to ``count`` levels; return the next."""
    location = block_info[0]["array-location"]
    ndim = block.ndim
    current = np.ascontiguousarray(block)  # one copy: chunks and halves read it in order
    for i in range(count):
        selection = tuple(
            slice(start >> i, (start >> i) + n) if axis >= ndim - 2 else slice(start, start + n)
            for axis, ((start, _), n) in enumerate(zip(location, current.shape, strict=True))
        )
        _write_level(target, first + i, current, selection)
        if i + 1 < count or returns_next:
            current = downsample(current, method)
    if returns_next:
        return current
    return np.zeros((1,) * ndim, dtype=block.dtype)


def _write_level(
    target: Target, level: int, block: np.ndarray, selection: tuple[slice, ...]
) -> None:
    """Write ``block`` at ``selection`` of a level; ``selection`` covers whole chunks (or
    reaches the level's edge)."""
    array = _level_array(target, level)
    if target.zstd == -1:  # another codec: zarr encodes
        array[selection] = block
        return
    encode = _zstd(target.zstd) if target.zstd is not None else None
    chunk = tuple(int(n) for n in array.chunks)
    little = block.dtype.newbyteorder("<") if block.dtype.itemsize > 1 else block.dtype
    files: dict[str, bytes] = {}
    ranges = [range(s.start // c, -(-s.stop // c)) for s, c in zip(selection, chunk, strict=True)]
    for coords in itertools.product(*ranges):
        piece = block[
            tuple(
                slice(i * c - s.start, min((i + 1) * c, s.stop) - s.start)
                for i, c, s in zip(coords, chunk, selection, strict=True)
            )
        ]
        if target.skip_empty and not piece.any():  # only the fill value: not stored
            continue
        if piece.shape != chunk:  # an edge chunk is stored whole, padded with the fill value
            padded = np.zeros(chunk, dtype=little)
            padded[tuple(slice(0, n) for n in piece.shape)] = piece
            piece = padded
        raw = np.ascontiguousarray(piece, dtype=little)
        data = encode(raw) if encode is not None else raw.tobytes()
        files[f"{level}/{array.metadata.encode_chunk_key(coords)}"] = bytes(data)
    _put(target, files)


def _zstd(level: int) -> Callable[[np.ndarray], Any]:
    """A zstd frame encoder: imagecodecs' when installed (faster), else numcodecs' (zarr's)."""
    try:
        import imagecodecs

        return lambda raw: imagecodecs.zstd_encode(raw, level=level)  # type: ignore[arg-type]
    except ImportError:
        import numcodecs

        return numcodecs.Zstd(level=level).encode


def _put(target: Target, files: Mapping[str, bytes]) -> None:
    """Store encoded chunks under the group (one batched request set for remote stores)."""
    if not files:
        return
    if "://" not in target.url:
        for key, data in files.items():
            path = os.path.join(target.url, *key.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        return
    fs, root = resolve_fs(target.url, target.storage_options)
    fs.pipe({f"{root.rstrip('/')}/{key}": data for key, data in files.items()})


def _levels_in_block(chunks: tuple[tuple[int, ...], ...], edges: tuple[int, int], left: int) -> int:
    """How many levels one task per block can write, at most ``left`` (0: rechunk first)."""
    best = left
    for axis, edge in zip((-2, -1), edges, strict=True):
        inner = chunks[axis][:-1]
        n = left
        while n > 0 and not (
            all(b % (edge << (n - 1)) == 0 for b in inner)
            and (n == left or all(b % (1 << n) == 0 for b in inner))
        ):
            n -= 1
        best = min(best, n)
    return best


def _restage(array: dask.array.Array, edges: tuple[int, int], left: int) -> dask.array.Array:
    """``array`` rechunked so that each task writes as many levels as fit in ``STAGE_BYTES``."""
    others = math.prod(max(c) for c in array.chunks[:-2]) * array.dtype.itemsize
    new = list(array.chunks)
    for axis, edge in zip((-2, -1), edges, strict=True):
        size, m = array.shape[axis], 0
        while m + 1 < left and (edge << (m + 1)) < size:
            m += 1
        new[axis] = edge << m
    while others * new[-2] * new[-1] > STAGE_BYTES and max(new[-2], new[-1]) > max(edges):
        axis = -2 if new[-2] >= new[-1] else -1
        new[axis] = max(edges[axis], new[axis] // 2)
    return array.rechunk(tuple(new))


def pyramid_graph(
    array: dask.array.Array,
    *,
    target: Target,
    levels: int,
    edges: tuple[int, int],
    method: str,
    start: int = 0,
) -> dask.array.Array:
    """The graph writing levels ``start`` (``array``) to ``levels - 1``.

    Parameters
    ----------
    array : dask.array.Array
        Level ``start`` in NGFF axis order (y and x last).
    target : Target
        The destination, whose level arrays exist (metadata written).
    levels : int
        The number of levels of the whole pyramid.
    edges : (int, int)
        The written chunks' edge along y and x.
    method : str
        How a level is made from the one above (see
        [`downsample`][dicom_dask.integrations.downsample.downsample]).
    start : int
        The level ``array`` is.

    Returns
    -------
    dask.array.Array
        A small array whose computation writes the levels.
    """
    import dask.array as da
    from dask.base import tokenize

    level = start
    token = tokenize(array, target, levels, edges, method)
    while level < levels:
        left = levels - level
        count = _levels_in_block(array.chunks, edges, left)
        if count == 0 or (level > start and array.numblocks[-1] * array.numblocks[-2] > 1):
            array = _restage(array, edges, left)
            count = max(1, _levels_in_block(array.chunks, edges, left))
        returns_next = level + count < levels
        factor = 1 << count
        if returns_next:
            out = tuple(
                tuple(-(-n // factor) for n in c) if axis >= array.ndim - 2 else c
                for axis, c in enumerate(array.chunks)
            )
        else:
            out = tuple((1,) * len(c) for c in array.chunks)
        array = da.map_blocks(
            _write_stage,
            array,
            chunks=out,
            dtype=array.dtype,
            meta=np.empty((0,) * array.ndim, dtype=array.dtype),
            name=f"ome-zarr-write-{level}-{token}",
            target=target,
            first=level,
            count=count,
            returns_next=returns_next,
            method=method,
        )
        level += count
    return array
