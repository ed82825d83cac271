"""Patch sampling over a slide level, for training loops.

[`PatchSampler`][dicom_dask.integrations.patches.PatchSampler] lays a grid of patches (size, stride,
padding from neighbouring pixels) over a bounding box of a level's total pixel matrix, optionally
keeps only patches over tissue (a mask computed lazily from a low-resolution level), and yields
them with their positions, or returns them as a dask array ``(n, h, w, c)``.

Iterating reads the level in strips of whole tile rows, each strip once, and cuts
the patches out of the strips held in memory: a tile is read once per pass however
many patches overlap it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.errors import LayoutError

if TYPE_CHECKING:
    import dask.array

    from dicom_dask.images.level import Level
    from dicom_dask.images.slide import Slide

__all__ = ["Patch", "PatchSampler", "tissue_mask"]


@dataclass(frozen=True)
class Patch:
    """One patch: ``pixels`` ``(h + 2p, w + 2p, c)`` whose core's top left is ``(x, y)``."""

    x: int
    y: int
    pixels: np.ndarray


def tissue_mask(
    array: Any, *, max_brightness: float = 220.0, min_saturation: float = 15.0
) -> dask.array.Array:
    """A lazy boolean mask of tissue on a (low-resolution) RGB or grey level.

    Tissue is darker than the glass (mean below ``max_brightness``) and, in colour,
    saturated (max - min of R, G, B above ``min_saturation``). Nothing is computed
    until the mask is.

    Parameters
    ----------
    array : dask or NumPy array, or Level
        One level's pixels, ``(y, x)`` or ``(y, x, samples)``: ``slide.levels[-1]`` (the
        lowest resolution), a [`Level`][dicom_dask.images.level.Level], or any such array.
    max_brightness, min_saturation : float
        The thresholds, in the pixels' values (0-255 for 8-bit data).

    Raises
    ------
    WrongInputError
        For a [`Slide`][dicom_dask.images.slide.Slide] (pass one of its levels, such as
        ``slide.levels[-1]``) or anything that is not a level's pixels.
    """
    import dask.array as da

    arr = da.asarray(_level_pixels(array))
    if arr.ndim == 3 and arr.shape[-1] >= 3:
        rgb = arr[..., :3].astype(np.float32)
        bright = rgb.mean(axis=-1)
        saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
        return (bright < max_brightness) & (saturation > min_saturation)
    grey = arr[..., 0] if arr.ndim == 3 else arr
    return grey.astype(np.float32) < max_brightness


def _level_pixels(array: Any) -> Any:
    """``array`` as a level's pixels ``(y, x[, s])``, or a WrongInputError naming the fix."""
    from dicom_dask.errors import WrongInputError
    from dicom_dask.images.level import Level
    from dicom_dask.images.slide import Slide

    if isinstance(array, Slide):
        raise WrongInputError(
            "tissue_mask takes one level's pixels, not a Slide: pass slide.levels[-1] "
            "(its lowest resolution, a dask array) or any (y, x[, samples]) array"
        )
    if isinstance(array, Level):
        array = array.array
    elif isinstance(array, list | tuple):
        array = np.asarray(array)
    shape = getattr(array, "shape", None)
    dtype = np.dtype(getattr(array, "dtype", object))
    if shape is None or dtype.kind not in "biuf":
        raise WrongInputError(
            f"tissue_mask takes a level's pixels, such as slide.levels[-1], not "
            f"{type(array).__name__}"
        )
    if len(shape) in (4, 5):
        raise WrongInputError(
            f"tissue_mask takes one optical path and focal plane, (y, x[, samples]); this "
            f"level has several, shape {tuple(shape)} (c, z, y, x[, s]): pass "
            "level.array[channel, plane]"
        )
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] <= 4)):
        raise WrongInputError(
            f"tissue_mask takes a level's pixels (y, x) or (y, x, samples), such as "
            f"slide.levels[-1]; got shape {tuple(shape)}"
        )
    return array


class PatchSampler:
    """Patches of a slide level on a regular grid.

    Parameters
    ----------
    source : Slide or Level
        The slide (then ``level`` picks the pyramid level) or one level.
    size : int or (width, height)
        Core patch size in pixels of the level.
    stride : int or (x, y), optional
        Step between patches (default: ``size``, no overlap; smaller overlaps).
    padding : int
        Pixels added on every side, taken from the neighbouring pixels (and
        ``fill_value`` beyond the matrix): each patch is ``size + 2 * padding``.
    level : int
        Pyramid level when ``source`` is a Slide.
    bbox : (x, y, width, height), optional
        The part of the level to cover (default: all of it).
    mask : "tissue", array or callable, optional
        Keep only patches over the mask. ``"tissue"``:
        [`tissue_mask`][dicom_dask.integrations.patches.tissue_mask] of the slide's
        lowest-resolution level; an array: a boolean mask covering the whole level at any
        resolution; a callable: called with the lowest level's dask array and returning such a mask.
    min_coverage : float
        Fraction of a patch's core that must be under the mask.
    channel, plane : int
        Optical path and focal plane.
    fill_value : number, optional
        Value of padding beyond the matrix (default: the level's fill value).
    """

    def __init__(
        self,
        source: Slide | Level,
        size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] | None = None,
        padding: int = 0,
        level: int = 0,
        bbox: tuple[int, int, int, int] | None = None,
        mask: str | np.ndarray | Callable[[Any], Any] | None = None,
        min_coverage: float = 0.5,
        channel: int = 0,
        plane: int = 0,
        fill_value: int | float | None = None,
    ) -> None:
        from dicom_dask.images.level import Level

        if isinstance(source, Level):
            self.level, slide = source, None
        else:
            self.level, slide = source.pyramid[level], source
        self.size = _pair(size, "size")
        self.stride = _pair(stride if stride is not None else self.size, "stride")
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = int(padding)
        rows, cols = self.level.matrix_shape
        self.bbox = tuple(int(v) for v in (bbox if bbox is not None else (0, 0, cols, rows)))
        self.channel, self.plane = int(channel), int(plane)
        self.fill_value = self.level.fill_value if fill_value is None else fill_value
        x0, y0, bw, bh = self.bbox
        (w, h), (sx, sy) = self.size, self.stride
        xs = np.arange(x0, x0 + bw - w + 1, sx, dtype=np.int64)
        ys = np.arange(y0, y0 + bh - h + 1, sy, dtype=np.int64)
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)  # row by row
        if mask is not None and len(grid):
            grid = grid[self._coverage(grid, mask, slide) >= min_coverage]
        #: ``(n, 2)`` top-left ``(x, y)`` of every patch core, row by row.
        self.positions = grid
        #: Tiles read by the last completed pass of
        #: [`__iter__`][dicom_dask.integrations.patches.PatchSampler].
        self.tiles_read = 0

    # -- the mask --------------------------------------------------------------------------
    def _coverage(self, grid: np.ndarray, mask: Any, slide: Slide | None) -> np.ndarray:
        if isinstance(mask, str) or callable(mask):
            if slide is None:
                raise ValueError("a computed mask needs the Slide, not a single Level")
            lowest = slide.pyramid[-1].array
            if lowest.ndim > 3:  # (c, z, y, x[, s]) -> this channel and plane
                lowest = lowest[self.channel, self.plane]
            if isinstance(mask, str):
                if mask != "tissue":
                    raise ValueError(f"unknown mask {mask!r}: expected 'tissue'")
                mask = tissue_mask(lowest)
            else:
                mask = mask(lowest)
        m = np.asarray(mask.compute() if hasattr(mask, "compute") else mask, dtype=bool)
        if m.ndim != 2:
            raise ValueError(f"the mask must be 2-D (rows, columns), got shape {m.shape}")
        # integral image of the mask, then each patch's share by scaling its core
        rows, cols = self.level.matrix_shape
        fy, fx = m.shape[0] / rows, m.shape[1] / cols
        integral = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.int64)
        integral[1:, 1:] = m.cumsum(0).cumsum(1)
        w, h = self.size
        x0 = np.clip(np.floor(grid[:, 0] * fx).astype(np.int64), 0, m.shape[1] - 1)
        y0 = np.clip(np.floor(grid[:, 1] * fy).astype(np.int64), 0, m.shape[0] - 1)
        x1 = np.clip(np.ceil((grid[:, 0] + w) * fx).astype(np.int64), x0 + 1, m.shape[1])
        y1 = np.clip(np.ceil((grid[:, 1] + h) * fy).astype(np.int64), y0 + 1, m.shape[0])
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return np.asarray(inside / ((x1 - x0) * (y1 - y0)))

    # -- reading ---------------------------------------------------------------------------
    @property
    def patch_shape(self) -> tuple[int, ...]:
        """``(h + 2p, w + 2p, samples)`` of every patch."""
        (w, h), p = self.size, self.padding
        return (h + 2 * p, w + 2 * p, self.level.samples)

    def __len__(self) -> int:
        return len(self.positions)

    def _columns(self) -> tuple[int, int]:
        """The column span every strip covers: the bbox plus padding."""
        if not len(self.positions):
            return 0, 0
        p, w = self.padding, self.size[0]
        return int(self.positions[:, 0].min()) - p, int(self.positions[:, 0].max()) + w + p

    def _strip(self, row: int, columns: tuple[int, int]) -> np.ndarray:
        """Tile row ``row`` across ``columns``: one read of the tiles under it."""
        th = self.level.tile_shape[0]
        x0, x1 = columns
        out = self.level.read_region(
            (x0, row * th), (x1 - x0, th), channel=self.channel, plane=self.plane
        )
        out = out if out.ndim == 3 else out[..., None]
        cols = self.level.matrix_shape[1]
        if self.fill_value != self.level.fill_value and (x0 < 0 or x1 > cols):
            out = out.copy()
            out[:, : max(0, -x0)] = self.fill_value
            out[:, max(0, cols - x0) :] = self.fill_value
        return out

    def _band(
        self, y0: int, y1: int, columns: tuple[int, int], strips: dict[int, np.ndarray]
    ) -> np.ndarray:
        """Rows ``[y0, y1)`` across ``columns``, from cached strips (read if missing)."""
        th = self.level.tile_shape[0]
        rows = self.level.matrix_shape[0]
        x0, x1 = columns
        band = np.full((y1 - y0, x1 - x0, self.level.samples), self.fill_value, self.level.dtype)
        for row in self._tile_rows(y0, y1):
            if row not in strips:
                strips[row] = self._strip(row, columns)
                self.tiles_read += _tiles_in(columns, self.level)
            lo, hi = max(y0, row * th), min(y1, (row + 1) * th, rows)
            band[lo - y0 : hi - y0] = strips[row][lo - row * th : hi - row * th]
        return band

    def _tile_rows(self, y0: int, y1: int) -> range:
        """The tile rows under pixel rows ``[y0, y1)`` (clipped to the matrix)."""
        th, rows = self.level.tile_shape[0], self.level.matrix_shape[0]
        return range(max(y0, 0) // th, (min(y1, rows) - 1) // th + 1)

    def _patch_rows(self) -> list[tuple[int, int]]:
        """``(start, stop)`` in [`positions`][dicom_dask.integrations.patches.PatchSampler] of each
        row of the grid."""
        y = self.positions[:, 1]
        starts = np.flatnonzero(np.r_[True, y[1:] != y[:-1]]).tolist()
        return list(zip(starts, [*starts[1:], len(y)], strict=True))

    def _cut(self, band: np.ndarray, x: int, columns: tuple[int, int]) -> np.ndarray:
        """The patch whose core starts at column ``x``, from a band across ``columns``."""
        lo = int(x) - self.padding - columns[0]
        return band[:, lo : lo + self.size[0] + 2 * self.padding]

    def __iter__(self) -> Iterator[Patch]:
        """Patches row by row; each tile row is read once and dropped once passed."""
        self.tiles_read = 0
        if not len(self.positions):
            return
        (_, h), p = self.size, self.padding
        th = self.level.tile_shape[0]
        columns = self._columns()
        strips: dict[int, np.ndarray] = {}
        for start, stop in self._patch_rows():
            y = int(self.positions[start, 1])
            for row in [r for r in strips if (r + 1) * th <= y - p]:
                del strips[row]  # rows above this band are never needed again
            band = self._band(y - p, y + h + p, columns, strips)
            for x in self.positions[start:stop, 0]:
                yield Patch(int(x), y, self._cut(band, x, columns))

    def to_dask(self) -> dask.array.Array:
        """The patches as a dask array ``(n, h + 2p, w + 2p, samples)``, one chunk per row
        of patches, read through a `PatchReader`:
        any selection (patches, and pixels within them) reads exactly the tiles under
        it, and a ``compute()`` of the whole array reads every tile once, as iteration
        does."""
        from dask.base import tokenize

        from dicom_dask.images.lazy import reader_dask

        reader = PatchReader(self)
        rows = [stop - start for start, stop in self._patch_rows()] or [0]
        chunks = (tuple(rows), *((n,) for n in reader.shape[1:]))
        token = tokenize(
            self.level.urls,
            self.level.manifest.offsets.tobytes(),
            self.positions.tobytes(),
            self.size,
            self.padding,
            self.channel,
            self.plane,
            self.fill_value,
            None if self.level.transform is None else self.level.transform.options.to_dict(),
        )
        return reader_dask(reader, chunks, f"dicom-patches-{token}")

    # -- results back as a map ---------------------------------------------------------------
    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the full patch grid over the bbox (masked patches included)."""
        bw, bh = self.bbox[2:]
        (w, h), (sx, sy) = self.size, self.stride
        return max(0, (bh - h) // sy + 1), max(0, (bw - w) // sx + 1)

    @property
    def map_affine(self) -> np.ndarray:
        """4x4: a [`to_map`][dicom_dask.integrations.patches.PatchSampler.to_map] pixel
        ``(row, column, 0, 1)`` -> slide ``(x, y, z, 1)`` mm.

        Map pixel ``(i, j)`` is centred on the centre of the patch at grid row ``i``,
        column ``j``, and is one stride wide: with ``stride == size`` it covers its patch
        exactly.
        """
        (w, h), (sx, sy) = self.size, self.stride
        x0, y0 = self.bbox[:2]
        to_level = np.eye(4)
        to_level[0, 0], to_level[1, 1] = sy, sx
        # the first patch's centre, in the level's (row, column) pixel indices
        to_level[0, 3], to_level[1, 3] = y0 + (h - 1) / 2, x0 + (w - 1) / 2
        return np.asarray(self.level.affine @ to_level)

    def map_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid ``(rows, columns)`` of every patch of
        [`positions`][dicom_dask.integrations.patches.PatchSampler]."""
        x0, y0 = self.bbox[:2]
        sx, sy = self.stride
        return (self.positions[:, 1] - y0) // sy, (self.positions[:, 0] - x0) // sx

    def to_map(self, scores: Any, *, fill_value: Any = np.nan, name: str = "score") -> Any:
        """Per-patch ``scores`` back as a lazy map over the slide (an xarray ``DataArray``).

        Parameters
        ----------
        scores : array-like or dask array
            ``(n,)`` one value per patch, or ``(n, k)`` ``k`` values per patch (class
            probabilities), in the order of
            [`positions`][dicom_dask.integrations.patches.PatchSampler].
        fill_value : number
            The value of grid cells without a patch (masked out).
        name : str
            The DataArray's name.

        Returns
        -------
        xarray.DataArray
            ``(y, x)`` or ``(c, y, x)``, dask-backed, one pixel per grid cell (one
            stride, centred on its patch). ``y``/``x`` are in mm along the level's axes,
            as in ``xr.open_dataset(slide, engine="dicom")``, so the map aligns with the
            slide there; ``attrs["affine"]`` (pixel -> slide mm) and ``pixel_spacing``
            place it on the slide for `to_dicom_pmap`, `to_dicom_seg` and `to_ome_zarr`.
        """
        import dask.array as da
        from dask import delayed

        try:
            import xarray as xr
        except ImportError as exc:  # pragma: no cover - xarray is the [xarray] extra
            raise ImportError(
                "to_map returns an xarray DataArray: pip install 'dicom_dask[xarray]'"
            ) from exc

        values = scores if isinstance(scores, da.Array) else np.asarray(scores)
        if values.ndim not in (1, 2) or values.shape[0] != len(self.positions):
            raise LayoutError(
                f"scores of shape {values.shape} for {len(self.positions)} patches: expected "
                "(n,) or (n, k) in the order of the sampler's positions"
            )
        affine = self.map_affine
        rows, cols = self.grid_shape
        lead = () if values.ndim == 1 else (int(values.shape[1]),)
        dtype = np.result_type(values.dtype, fill_value)
        grid = self.map_index()
        block = delayed(_scatter)(values, grid, (rows, cols), fill_value, dtype)
        array = da.from_delayed(block, shape=(*lead, rows, cols), dtype=dtype)
        spacing = np.linalg.norm(affine[:3, :2], axis=0)
        direction = affine[:3, :2] / spacing
        coords = {
            "y": float(affine[:3, 3] @ direction[:, 0]) + np.arange(rows) * spacing[0],
            "x": float(affine[:3, 3] @ direction[:, 1]) + np.arange(cols) * spacing[1],
        }
        dataset = self.level.image.dataset
        attrs = {
            "long_name": f"{name} per patch of {self.size[0]} x {self.size[1]} pixels",
            "affine": affine.tolist(),
            "pixel_spacing": (float(spacing[0]), float(spacing[1])),
            "origin": [float(v) for v in affine[:3, 3]],
            "frame_of_reference_uid": str(dataset.get("FrameOfReferenceUID", "")),
            "source": self.level.urls[0],
        }
        data = xr.DataArray(
            array, dims=(*(("c",) if lead else ()), "y", "x"), coords=coords, attrs=attrs, name=name
        )
        for axis in ("y", "x"):
            data.coords[axis].attrs.update({"units": "mm", "long_name": f"slide {axis} (mm)"})
        return data

    def __repr__(self) -> str:
        return (
            f"PatchSampler(n={len(self)}, size={self.size}, stride={self.stride}, "
            f"padding={self.padding}, bbox={self.bbox})"
        )


def _scatter(
    values: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    shape: tuple[int, int],
    fill_value: Any,
    dtype: Any,
) -> np.ndarray:
    """``values`` ``(n[, k])`` at grid cells ``grid``, ``fill_value`` elsewhere."""
    values = np.asarray(values)
    lead = values.shape[1:]
    out = np.full((*shape, *lead), fill_value, dtype=dtype)
    out[grid[0], grid[1]] = values
    return np.moveaxis(out, -1, 0) if lead else out


def _tiles_in(columns: tuple[int, int], level: Level) -> int:
    """Tiles of one tile row under ``columns`` (clipped to the matrix)."""
    tw = level.tile_shape[1]
    x0, x1 = max(columns[0], 0), min(columns[1], level.matrix_shape[1])
    return 0 if x1 <= x0 else (x1 - 1) // tw - x0 // tw + 1


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"{name} must be a positive int or (x, y) pair, got {value!r}")
    return int(pair[0]), int(pair[1])


class PatchReader:
    """The patches of a [`PatchSampler`][dicom_dask.integrations.patches.PatchSampler] as
    an array-like ``(n, h + 2p, w + 2p, samples)`` for
    [`reader_dask`][dicom_dask.images.lazy.reader_dask].

    ``__getitem__`` indexes each axis independently (integers, slices with any step,
    integer arrays). The level is read one tile row at a time, across the union of
    the columns the selected patches need in that row: exactly the tiles under the
    selected pixels, each once per call. Pixels beyond the matrix are the sampler's
    ``fill_value``.
    """

    def __init__(self, sampler: PatchSampler) -> None:
        self.sampler = sampler
        level = sampler.level
        self.shape = (len(sampler.positions), *sampler.patch_shape)
        self.ndim = 4
        if level.transform is None:
            self.dtype = np.dtype(level.dtype)
        else:
            self.dtype = np.dtype(level._single(sampler.channel, sampler.plane).options.dtype)
        #: Threads decoding one selection (set by a direct ``compute``).
        self.threads = 1

    def __repr__(self) -> str:
        return f"PatchReader({self.sampler!r})"

    def _level_reader(self) -> Any:
        from dicom_dask.images.lazy import FusedTransform

        level = self.sampler.level
        if level.transform is None:
            return level.reader(squeeze=False, threads=self.threads)
        reader = level.reader(squeeze=False)  # the transform's threads each read their part
        roles = "ffyx" + ("s" if level.samples > 1 else "")
        fused = FusedTransform(reader, level.transform, roles)
        fused.threads = self.threads
        return fused

    def __getitem__(self, key: Any) -> np.ndarray:
        from dicom_dask.chunks.selection import Axis, normalize, take

        s = self.sampler
        sel = normalize(key, self.shape)
        axes = [Axis(k) for k in sel[:3]]
        which, r, c = (a.positions() for a in axes)
        samples = self.shape[3]
        out = np.full((len(which), len(r), len(c), samples), s.fill_value, dtype=self.dtype)
        final = (*tuple(0 if a.drop else slice(None) for a in axes), sel[3])
        if not out.size or not Axis(sel[3]).n:
            return take(out, final)  # nothing selected: nothing read
        rows, cols = s.level.matrix_shape
        th = s.level.tile_shape[0]
        top = s.positions[which, 1] - s.padding  # (k,) first pixel row of each patch
        left = s.positions[which, 0] - s.padding
        ys = top[:, None] + r[None, :]  # (k, len(r)) level rows of each selected pixel row
        xs = left[:, None] + c[None, :]
        y_in = (ys >= 0) & (ys < rows)
        x_in = (xs >= 0) & (xs < cols)
        reader = self._level_reader()
        lead: tuple[Any, ...] = (s.channel, s.plane)
        for tile_row in np.unique(ys[y_in] // th).tolist():
            in_row = y_in & (ys // th == tile_row)  # (k, len(r))
            patches = np.flatnonzero(in_row.any(axis=1))
            need_y = np.unique(ys[in_row])
            need_x = np.unique(xs[patches][x_in[patches]])
            if not len(need_x):
                continue
            strip = reader[(*lead, need_y, need_x)]  # exactly this row's touched tiles
            if strip.ndim == 2:
                strip = strip[..., None]
            for i in patches.tolist():
                ri = np.flatnonzero(in_row[i])
                ci = np.flatnonzero(x_in[i])
                if not len(ci):
                    continue
                sy = np.searchsorted(need_y, ys[i, ri])
                sx = np.searchsorted(need_x, xs[i, ci])
                out[i, ri[:, None], ci[None, :]] = strip[sy[:, None], sx[None, :]]
        return take(out, final)
