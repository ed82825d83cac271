"""What the DICOM writers share: destination paths, the frame progress bar, the worker
count and the band-by-band encoding of a 2-D array into frames.

[`encoded_bands`][dicom_dask.integrations.writers.common.encoded_bands] is the path of
the Segmentation and Parametric Map writers (pyramids go through
[`pyramid_tasks`][dicom_dask.integrations.writers.pyramid.pyramid_tasks]); the worker
count it sizes its windows with comes from
[`compute_threads`][dicom_dask.integrations.writers.common.compute_threads].
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.config import threads
from dicom_dask.frames.storage import resolve_fs
from dicom_dask.integrations.writers.encode import Encoder, encode_block
from dicom_dask.integrations.writers.options import active_client, compute
from dicom_dask.integrations.writers.stream import is_local
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array

__all__ = [
    "CHUNK_EDGE",
    "FrameProgress",
    "compute_threads",
    "encoded_bands",
    "join_path",
    "make_folder",
]

#: Target edge of an encoding task's block, in pixels (rounded to whole tiles), for
#: [`encoded_bands`][dicom_dask.integrations.writers.common.encoded_bands].
CHUNK_EDGE = 2048


class FrameProgress:
    """A one-line text progress bar over the frames written (any scheduler).

    Parameters
    ----------
    total : int
        The number of frames the instance (or the instances) will hold.
    label : str
        What is written, after the bar.
    enabled : bool
        Print the bar (otherwise only count).
    """

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0

    def add(self, n: int) -> None:
        """Count ``n`` more frames written, and redraw the bar."""
        self.done += n
        if self.enabled:
            filled = int(40 * self.done / max(self.total, 1))
            sys.stderr.write(
                f"\r[{'#' * filled}{' ' * (40 - filled)}] "
                f"{100 * self.done // max(self.total, 1):3d}% {self.label}"
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def compute_threads() -> int:
    """The number of tasks a writer's computation runs at once (at least 1).

    What sizes the windows of
    [`encoded_bands`][dicom_dask.integrations.writers.common.encoded_bands]: with a
    `distributed.Client` active, the threads of its workers; otherwise dask's own
    ``num_workers`` when the user set it (``dask.config.set(num_workers=...)``: it is
    the size of the pool that runs the tasks, so it wins), else
    [`dicom_dask.config.threads`][dicom_dask.config.threads] (``threads`` of
    [`dicom_dask.config`][dicom_dask.config], zarr's ``threading.max_workers``, or the
    CPU count).
    """
    client = active_client()
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    import dask

    return max(1, int(dask.config.get("num_workers", None) or threads()))


def join_path(dest: str, name: str) -> str:
    """The file ``name`` in the folder ``dest`` (a local path or an fsspec URL)."""
    return f"{dest.rstrip('/')}/{name}" if not is_local(dest) else os.path.join(dest, name)


def make_folder(dest: str, storage_options: StorageOptions) -> None:
    """Create the folder ``dest`` (and its parents) if it does not exist.

    Parameters
    ----------
    dest : str
        A local path, ``file://`` URL or fsspec URL.
    storage_options : mapping or callable, optional
        fsspec options of ``dest``.
    """
    if is_local(dest):
        os.makedirs(dest.removeprefix("file://"), exist_ok=True)
    else:
        fs, root = resolve_fs(dest, storage_options)
        fs.makedirs(root, exist_ok=True)


def _band(tile: int, chunk_edge: int) -> int:
    return tile * max(1, round(chunk_edge / tile))


def _blocks(array: dask.array.Array, tile: tuple[int, int], chunk_edge: int) -> Any:
    """``array`` in blocks of whole tiles, about ``chunk_edge`` on a side."""
    bh, bw = _band(tile[0], chunk_edge), _band(tile[1], chunk_edge)
    return array.rechunk((bh, bw, *array.shape[2:]))


def encoded_bands(
    array: dask.array.Array,
    *,
    tile: tuple[int, int],
    encoder: Encoder,
    chunk_edge: int = CHUNK_EDGE,
    fill: Any = 0,
    progress: FrameProgress | None = None,
    window: int | None = None,
) -> Iterator[list[bytes]]:
    """Encoded frames of ``array`` ``(y, x[, s])`` in TILED_FULL order, a band at a time.

    The array is rechunked to blocks of whole tiles; each block is encoded by one dask
    task. Bands of blocks are computed ``window`` at a time on the active scheduler,
    the next window while the current one is written.

    Parameters
    ----------
    array : dask.array.Array
        ``(y, x)`` or ``(y, x, samples)`` pixels.
    tile : (int, int)
        Rows and columns of a frame.
    encoder : callable
        Tile (``numpy.ndarray``) to frame bytes: an
        [`Encoder`][dicom_dask.integrations.writers.encode.Encoder] or a frame packer.
    chunk_edge : int
        About the edge of a task's block, in pixels (rounded to whole tiles).
    fill : scalar
        Value of the pixels padding the tiles at the right and bottom edges.
    progress : FrameProgress, optional
        Counts the frames as they are yielded.
    window : int, optional
        Block rows computed at once (default: enough to keep twice
        [`compute_threads`][dicom_dask.integrations.writers.common.compute_threads]
        tasks busy).

    Yields
    ------
    list of bytes
        The frames of one band of tiles, in order.
    """
    blocks = _blocks(array, tile, chunk_edge)
    th, tw = tile
    ny_blocks, nx_blocks = blocks.numblocks[:2]
    out_chunks = (
        tuple(-(-c // th) for c in blocks.chunks[0]),
        tuple(-(-c // tw) for c in blocks.chunks[1]),
    )
    encoded = blocks.map_blocks(
        encode_block,
        tile=tile,
        encoder=encoder,
        fill=fill,
        dtype=object,
        chunks=out_chunks,
        drop_axis=list(range(2, array.ndim)),
        meta=np.empty((0, 0), dtype=object),
    )
    delayed = encoded.to_delayed()
    if window is None:
        window = max(1, -(-2 * compute_threads() // nx_blocks))
    starts = list(range(0, ny_blocks, window))

    def rows_from(start: int) -> list[Any]:
        stop = min(start + window, ny_blocks)
        flat = [d for i in range(start, stop) for d in delayed[i]]
        results = compute(*flat)
        return [results[k : k + nx_blocks] for k in range(0, len(flat), nx_blocks)]

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(rows_from, starts[0]) if starts else None
        for k in range(len(starts)):
            assert pending is not None
            rows = pending.result()
            pending = pool.submit(rows_from, starts[k + 1]) if k + 1 < len(starts) else None
            for row in rows:
                band = np.concatenate(row, axis=1)
                frames = [bytes(b) for b in band.ravel()]
                if progress is not None:
                    progress.add(len(frames))
                yield frames
