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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.errors import LayoutError
from dicom_dask.integrations.writers.encode import Encoder, downsample2, encode_block

if TYPE_CHECKING:
    import dask.array

__all__ = ["BAND_TILE_ROWS", "Part", "band_task", "level_shapes", "pyramid_tasks", "row_task"]

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


def _tiles(n: int, tile: int) -> int:
    return -(-n // tile)


def _even(tile: tuple[int, int]) -> bool:
    """Whether means can be handed on (a row of tiles starts on an even pixel)."""
    return tile[0] % 2 == 0 and tile[1] % 2 == 0


def band_task(
    source: Any,
    key: Any,
    *,
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
    block = np.asarray(source if key is None else source[key])
    th, tw = tile
    rows, cols = block.shape[:2]
    out = [np.empty((_tiles(rows, th), _tiles(cols, tw)), dtype=object)]
    if levels == 1:
        out[0][...] = encode_block(block, tile=tile, encoder=encoder, fill=fill)
        return out, None
    out.append(np.empty((_tiles(rows // 2, th), _tiles(cols // 2, tw)), dtype=object))
    even = _even(tile)
    pieces = []
    for s, x0 in enumerate(range(0, cols, 2 * tw)):
        strip = block[:, x0 : x0 + 2 * tw]  # two tiles across: fits the cache
        out[0][:, 2 * s : 2 * s + _tiles(strip.shape[1], tw)] = encode_block(
            strip, tile=tile, encoder=encoder, fill=fill
        )
        down = downsample2(strip)
        if down.shape[0] == 0 or down.shape[1] == 0:
            continue  # a last single row or column: no pixel of level 1
        out[1][:, s : s + 1] = encode_block(down, tile=tile, encoder=encoder, fill=fill)
        if carry:
            pieces.append(downsample2(down) if even else down)
    return out, (np.concatenate(pieces, axis=1) if carry and pieces else None)


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
        block = downsample2(block)
    encoded = [encode_block(block, tile=tile, encoder=encoder, fill=fill)]
    if not carry:
        return encoded, None
    return encoded, downsample2(block) if even else block


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
        keys = [[source[y : y + band, x : x + width].reader_key() for x in xs] for y in ys]
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
            source, key = (reader, keys[b][c]) if reader is not None else (blocks[b][c], None)
            encoded, piece = task(
                source,
                key,
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
