"""The tasks that write a pyramid in one pass: decode, encode and downsample fused.

Level 0 is cut into *bands* of two tile rows (and, on very wide images, blocks of
whole tiles across). One dask task per band reads its pixels -- straight from the
source's reader when the source is a dicom_dask array, so that the frames are read
and decoded inside that very task -- encodes its level-0 tiles, downsamples the band
by 2 x 2 means column strip by column strip (while each strip is in the CPU cache),
encodes the one tile row of level 1 that results and, when more levels follow,
hands on that row downsampled once more (a quarter of the band's size). Each tile
row of the further levels is one small task that joins the two rows handed on by the
row above it, encodes them and hands on their mean in turn: the pyramid is a tree of
about ``2 x bands`` tasks, whatever the number of tiles.

No full-resolution pixels leave the task that decodes them; what comes back to the
writer is encoded frames. [`pyramid_tasks`][dicom_dask.integrations.writers.pyramid.pyramid_tasks]
builds the tasks; the caller computes them on the active scheduler (see
[`as_completed`][dicom_dask.integrations.writers.options.as_completed]) and streams the
frames into the files in order.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.chunks.reader import ManifestArray
from dicom_dask.errors import LayoutError
from dicom_dask.integrations.writers.encode import Encoder, downsample2

if TYPE_CHECKING:
    import dask.array

__all__ = [
    "BAND_TILE_ROWS",
    "Part",
    "band_task",
    "halve",
    "level_shapes",
    "pyramid_tasks",
    "row_task",
]

#: Tile rows of level 0 in one band task (two: the band then holds whole level-1 tiles).
BAND_TILE_ROWS = 2


@dataclass(frozen=True)
class Part:
    """Where a task's encoded frames go: its first array to level ``level`` (of the
    written pyramid) at tile row ``row`` and tile column ``column``; its ``i``-th array
    to level ``level + i`` at ``(row >> i, column >> i)``."""

    level: int
    row: int
    column: int


def level_shapes(shape: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """``(rows, columns)`` of each level, each half the one above (odd edges dropped)."""
    out = [(int(shape[0]), int(shape[1]))]
    for _ in range(1, levels):
        rows, cols = out[-1][0] // 2, out[-1][1] // 2
        if rows == 0 or cols == 0:
            raise LayoutError(
                f"cannot write {levels} levels of a {shape[0]} x {shape[1]} image: "
                f"level {len(out)} would be {rows} x {cols}"
            )
        out.append((rows, cols))
    return out


#: Per-thread scratch buffers of the band tasks (see ``_scratch``).
_LOCAL = threading.local()
#: Scratch buffers at most this large are kept from task to task.
_KEEP = 4 * 2**20
_LOW_BYTES = np.uint64(0x00FF00FF00FF00FF)


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A buffer of this thread reused from tile to tile and task to task.

    A `distributed` worker sets ``MALLOC_TRIM_THRESHOLD_``, so that glibc hands freed
    memory back to the system at once: every temporary array of a tile's size then
    costs fresh, zeroed pages (measured: 3x the CPU of the 2 x 2 mean itself).
    """
    dtype = np.dtype(dtype)
    need = int(np.prod(shape)) * dtype.itemsize
    buffers: dict[str, np.ndarray] = _LOCAL.__dict__.setdefault("buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.nbytes < need:
        buf = np.empty(max(need, 8), np.uint8)
        if need <= _KEEP:
            buffers[name] = buf
    return buf[:need].view(dtype).reshape(shape)


def halve(block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """2 x 2 means of ``block`` (rounded half up; a last odd row or column dropped),
    into ``out`` when given.

    The same values as [`downsample2`][dicom_dask.integrations.writers.encode.downsample2].
    8-bit grey and RGB rows are summed eight bytes at a time in 64-bit words (even and
    odd bytes in 16-bit lanes), in reused buffers: 3x less CPU than strided NumPy sums,
    and no temporary arrays.
    """
    h, w = block.shape[0] // 2 * 2, block.shape[1] // 2 * 2
    if out is None:
        out = np.empty((h // 2, w // 2, *block.shape[2:]), dtype=block.dtype)
    samples = block.shape[2] if block.ndim == 3 else 1
    rows = block[:h, : w // 8 * 8]
    if (
        block.dtype != np.uint8
        or samples not in (1, 3)
        or rows.size == 0
        or rows.strides[1] != samples
        or rows.strides[-1] != 1
        or sys.byteorder != "little"
    ):
        np.copyto(out, downsample2(block[:h, :w]))
        return out
    w8 = rows.shape[1]
    _halve_words(rows.reshape(h, w8 * samples).view(np.uint64), samples, out[:, : w8 // 2])
    if w8 < w:
        out[:, w8 // 2 :] = downsample2(block[:h, w8:w])
    return out


def _halve_words(words: np.ndarray, samples: int, out: np.ndarray) -> None:
    """``halve`` of 8-bit rows seen as 64-bit words ``(rows, words)``."""
    hh, n = words.shape[0] // 2, words.shape[1]
    upper, lower = words[0::2], words[1::2]
    even, odd, tmp = (_scratch(k, (hh, n), np.uint64) for k in ("even", "odd", "tmp"))
    np.bitwise_and(upper, _LOW_BYTES, out=even)
    np.bitwise_and(lower, _LOW_BYTES, out=tmp)
    even += tmp  # bytes 0, 2, 4, 6 of each word, summed over the two rows
    np.right_shift(upper, 8, out=odd)
    odd &= _LOW_BYTES
    np.right_shift(lower, 8, out=tmp)
    tmp &= _LOW_BYTES
    odd += tmp  # bytes 1, 3, 5, 7
    e, o = even.view(np.uint16), odd.view(np.uint16)  # lane k: the sum of byte 2k (+1)
    pairs = out.shape[1]
    acc = _scratch("acc", (hh, pairs, samples), np.uint16)
    if samples == 1:  # pixel pair j: bytes 2j and 2j + 1
        np.add(e, o, out=acc[..., 0])
    else:  # pixel pair j: bytes 6j .. 6j + 5 = R G B R G B, lanes 3j .. 3j + 2
        e3, o3 = e.reshape(hh, pairs, 3), o.reshape(hh, pairs, 3)
        np.add(e3[..., 0], o3[..., 1], out=acc[..., 0])
        np.add(o3[..., 0], e3[..., 2], out=acc[..., 1])
        np.add(e3[..., 1], o3[..., 2], out=acc[..., 2])
    acc += 2
    acc >>= 2
    np.copyto(out, acc.reshape(out.shape), casting="unsafe")


def _encode_tiles(
    block: np.ndarray,
    out: np.ndarray,
    column: int,
    *,
    tile: tuple[int, int],
    encoder: Encoder,
    fill: Any,
) -> None:
    """Encode the tiles of ``block`` into ``out[:, column:]``, each copied first into one
    reused contiguous buffer (edge tiles padded with ``fill``)."""
    th, tw = tile
    buf = _scratch("tile", (th, tw, *block.shape[2:]), block.dtype)
    for r in range(_tiles(block.shape[0], th)):
        for c in range(_tiles(block.shape[1], tw)):
            part = block[r * th : (r + 1) * th, c * tw : (c + 1) * tw]
            if part.shape[:2] != (th, tw):
                buf.fill(fill)
            buf[: part.shape[0], : part.shape[1]] = part
            out[r, column + c] = encoder(buf)


class _Band:
    """The pixels of one band, read strip by strip where the source is a dicom_dask
    reader (each strip decoded into one reused, cache-sized buffer), else whole."""

    def __init__(self, source: Any, key: Any, shape: tuple[int, ...] | None) -> None:
        self.reader, self.key, self.block = source, key, None
        if key is None:
            self.block = np.asarray(source)
        elif not (shape is not None and isinstance(source, ManifestArray) and _plain(key)):
            self.block = np.asarray(source[key])
        if self.block is not None:
            self.shape, self.dtype = self.block.shape, self.block.dtype
        else:
            assert shape is not None
            self.shape, self.dtype = tuple(shape), np.dtype(source.dtype)

    def strip(self, x0: int, width: int) -> np.ndarray:
        """Columns ``x0 .. x0 + width`` of the band."""
        if self.block is not None:
            return self.block[:, x0 : x0 + width]
        x1 = min(x0 + width, self.shape[1])
        ys, xs = self.key[0], self.key[1]
        key = (ys, slice(xs.start + x0, xs.start + x1, 1), *self.key[2:])
        out = _scratch("strip", (self.shape[0], x1 - x0, *self.shape[2:]), self.dtype)
        return self.reader.read(key, out=out)


def _plain(key: Any) -> bool:
    """Whether a reader key selects rows and columns as plain ranges (step 1)."""
    return (
        isinstance(key, tuple)
        and len(key) >= 2
        and all(
            isinstance(k, slice) and k.start is not None and k.step in (1, None) for k in key[:2]
        )
    )


def _tiles(n: int, tile: int) -> int:
    return -(-n // tile)


def _even(tile: tuple[int, int]) -> bool:
    """Whether means can be handed on (a row of tiles starts on an even pixel)."""
    return tile[0] % 2 == 0 and tile[1] % 2 == 0


def band_task(
    source: Any,
    key: Any,
    *,
    shape: tuple[int, ...] | None = None,
    encoder: Encoder,
    tile: tuple[int, int],
    levels: int,
    carry: bool,
    fill: Any = 0,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Read, encode and downsample one band (see the module notes).

    Parameters
    ----------
    source : array-like
        A reader (``source[key]`` reads the band) or, with ``key=None``, the band.
    shape : tuple of int, optional
        The band's shape (a dicom_dask reader then reads into a reused buffer).
    levels : int
        Levels encoded here: 1 (level 0 only) or 2 (level 0 and the level-1 row).
    carry : bool
        Hand on the level-1 row's 2 x 2 means (its raw pixels when a tile side is
        odd, the next task then averages them).

    Returns
    -------
    (list of object arrays, ndarray or None)
        The encoded frames of each level, ``(tile rows, tile columns)``, and what is
        handed on.
    """
    band = _Band(source, key, shape)
    th, tw = tile
    rows, cols = band.shape[:2]
    samples = tuple(band.shape[2:])
    out = [np.empty((_tiles(rows, th), _tiles(cols, tw)), dtype=object)]
    if levels == 2:
        out.append(np.empty((_tiles(rows // 2, th), _tiles(cols // 2, tw)), dtype=object))
    even = _even(tile)
    piece = None
    if carry:  # what is handed on: the level-1 row's means, or the row itself
        h1, w1 = rows // 2, cols // 2
        piece = np.empty(((h1 // 2, w1 // 2) if even else (h1, w1)) + samples, band.dtype)
    for s, x0 in enumerate(range(0, cols, 2 * tw)):
        strip = band.strip(x0, 2 * tw)  # two tiles across: in cache from here on
        _encode_tiles(strip, out[0], 2 * s, tile=tile, encoder=encoder, fill=fill)
        h, w = strip.shape[0] // 2, strip.shape[1] // 2
        if levels == 1 or h == 0 or w == 0:
            continue  # no level 1 here, or a last single row or column
        down = halve(strip, _scratch("down", (h, w, *samples), strip.dtype))
        _encode_tiles(down, out[1], s, tile=tile, encoder=encoder, fill=fill)
        if piece is not None and even:
            halve(down, piece[:, x0 // 4 : x0 // 4 + w // 2])
        elif piece is not None:
            piece[:, x0 // 2 : x0 // 2 + w] = down
    return out, piece


def row_task(
    *children: np.ndarray | None,
    columns: int,
    encoder: Encoder,
    tile: tuple[int, int],
    carry: bool,
    fill: Any = 0,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """One tile row of a level from what the two rows above handed on (see the module
    notes): ``children`` are ``columns`` pieces of the upper row, then of the lower one."""
    rows = []
    for i in range(0, len(children), columns):
        # a block of a single pixel column, or a row of a single pixel row, hands nothing on
        parts = [p for p in children[i : i + columns] if p is not None]
        if parts:
            rows.append(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
    block = np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
    even = _even(tile)
    if not even:  # the raw rows above were handed on
        block = halve(block)
    th, tw = tile
    encoded = [np.empty((_tiles(block.shape[0], th), _tiles(block.shape[1], tw)), dtype=object)]
    _encode_tiles(block, encoded[0], 0, tile=tile, encoder=encoder, fill=fill)
    if not carry:
        return encoded, None
    return encoded, halve(block) if even else block


def _is_reader_array(array: Any) -> bool:
    return hasattr(array, "reader") and callable(getattr(array, "reader_key", None))


def _band_sources(
    array: dask.array.Array, band: int, width: int, token: str
) -> tuple[Any, list[list[Any]], list[list[Any]]]:
    """What each band task reads: ``(source, keys, blocks)`` indexed ``[band][column]``.

    A dicom_dask array (a reader under it) gives the reader, one graph node shared by
    every task, and each band's key: the band reads its own frames. Any other dask
    array is cut into band blocks by dask (its own tasks compute them).
    """
    import dask

    rows, cols = array.shape[:2]
    ys, xs = range(0, rows, band), range(0, cols, width)
    if _is_reader_array(array):
        source: Any = array
        reader = dask.delayed(source.reader, name=f"slide-reader-{token}", traverse=False)
        keys = []
        for y in ys:
            row = []
            for x in xs:
                part = source[y : y + band, x : x + width]
                row.append((part.reader_key(), part.shape))
            keys.append(row)
        return reader, keys, []
    blocks = array.rechunk((band, width, *array.shape[2:])).to_delayed()
    blocks = blocks.reshape(blocks.shape[:2])
    return None, [], [[blocks[i, j] for j in range(len(xs))] for i in range(len(ys))]


def pyramid_tasks(
    array: dask.array.Array,
    *,
    levels: int,
    tile: tuple[int, int],
    encoder: Encoder,
    block_pixels: int,
    first: int = 0,
    fill: Any = 0,
) -> dict[Part, Any]:
    """The delayed encoded frames of ``levels`` levels written from ``array``.

    Parameters
    ----------
    array : dask.array.Array
        ``(y, x[, samples])``: the first of the levels.
    block_pixels : int
        Pixels of level 0 one band task holds at most (bands wider than that are cut
        into blocks of whole tiles across).
    first : int
        Level number of ``array`` in the written pyramid (the ``Part`` levels).

    Returns
    -------
    dict
        [`Part`][dicom_dask.integrations.writers.pyramid.Part] -> a `dask.delayed`
        list of object arrays ``(tile rows, tile columns)`` of encoded frames, one per
        level the task encodes.
    """
    import dask
    from dask.base import tokenize

    shapes = level_shapes(array.shape[:2], levels)
    th, tw = tile
    band = BAND_TILE_ROWS * th
    width = max(2 * tw, block_pixels // band // (2 * tw) * (2 * tw))
    width = min(width, _tiles(shapes[0][1], 2 * tw) * 2 * tw)
    token = tokenize(array.name, levels, tile, encoder, block_pixels, fill)
    reader, keys, blocks = _band_sources(array, band, width, token)
    here = min(levels, 2)
    carry = levels > 2
    out: dict[Part, Any] = {}
    handed: list[list[Any]] = []  # per band row: the pieces of each column block
    task = dask.delayed(band_task, pure=True, nout=2)
    for b in range(_tiles(shapes[0][0], band)):
        row = []
        for c in range(_tiles(shapes[0][1], width)):
            source, (key, shape) = (
                (reader, keys[b][c]) if reader is not None else (blocks[b][c], (None, None))
            )
            encoded, piece = task(
                source,
                key,
                shape=shape,
                encoder=encoder,
                tile=tile,
                levels=here,
                carry=carry,
                fill=fill,
                dask_key_name=f"slide-band-{token}-{b}-{c}",
            )
            out[Part(first, BAND_TILE_ROWS * b, c * width // tw)] = encoded
            row.append(piece)
        handed.append(row)
    node = dask.delayed(row_task, pure=True, nout=2)
    for k in range(2, levels):
        carry = k + 1 < levels
        upper = handed
        handed = []
        for r in range(_tiles(shapes[k][0], th)):
            children = [p for child in upper[2 * r : 2 * r + 2] for p in child]
            encoded, piece = node(
                *children,
                columns=len(upper[0]),
                encoder=encoder,
                tile=tile,
                carry=carry,
                fill=fill,
                dask_key_name=f"slide-row-{token}-{k}-{r}",
            )
            out[Part(first + k, r, 0)] = encoded
            handed.append([piece])
    return out
