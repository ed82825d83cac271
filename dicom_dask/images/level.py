"""One level of a slide: tiled instances merged on one tile grid, as dask arrays.

Several instances of one level (optical paths, focal planes) are merged onto one
chunk grid. Every level is a dask array whose chunks hold several tiles, read
through the chunk manifest in one batched request per task and decoded by the same
codec configuration zarr uses; regions are read directly, decoding in threads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.chunks.manifest import ChunkManifest
from dicom_dask.chunks.metadata import frame_codecs, output_photometric
from dicom_dask.chunks.store import DicomStore
from dicom_dask.config import threads as config_threads
from dicom_dask.errors import LayoutError
from dicom_dask.frames import versions_of
from dicom_dask.frames.sizes import format_size
from dicom_dask.images.tiled import ChannelInfo, TiledImage, frame_chunks, place_frames
from dicom_dask.images.transforms import FrameTransformer, TransformOptions, apply_block
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array

__all__ = ["Level", "LevelView", "merge_level"]

#: Target edge of a dask chunk, in pixels (rounded to whole tiles).
CHUNK_EDGE = 2048


class _TileLabel:
    """Names a chunk of a level by its tile (picklable)."""

    def __init__(self, axes: str) -> None:
        self.axes = axes

    def __call__(self, coords: tuple[int, ...]) -> str:
        parts = [f"{a}={c}" for a, c in zip(self.axes, coords, strict=False) if a != "s"]
        return "tile " + ", ".join(parts)


@dataclass(frozen=True)
class LevelView:
    """How a level's array lies over its manifest (see
    [`Level.shape`][dicom_dask.images.level.Level.shape]).

    Attributes
    ----------
    axes : str
        ``"yx"`` (squeezed) or ``"czyx"``, then ``"s"`` for colour samples.
    shape : tuple of int
        Shape of the array.
    chunk_shape : tuple of int
        One tile (all samples).
    grid : tuple of int
        Tiles along each axis: the shape of the manifest.
    """

    axes: str
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    grid: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Level:
    """One pyramid level (or associated image): instances merged on one tile grid.

    Attributes
    ----------
    images : tuple of TiledImage
        The instances of this level.
    manifest : ChunkManifest
        Chunk grid ``(channels, planes, tile rows, tile columns)``.
    channels : tuple of ChannelInfo
        Optical paths (or segments).
    focal_planes : tuple of float
        Z offsets in µm.
    """

    images: tuple[TiledImage, ...]
    manifest: ChunkManifest
    channels: tuple[ChannelInfo, ...]
    focal_planes: tuple[float, ...]
    raw: bool = False
    backend: str = "auto"
    fill_value: int | float = 0
    storage_options: StorageOptions = None
    chunk_edge: int = CHUNK_EDGE
    #: Pixel transforms applied to [`array`][dicom_dask.images.level.Level.array] and regions (see
    #: [`transformed`][dicom_dask.images.level.Level.transformed]).
    transform: FrameTransformer | None = None

    # -- description ---------------------------------------------------------------
    @property
    def image(self) -> TiledImage:
        """The first instance (geometry and pixel description are shared)."""
        return self.images[0]

    @property
    def image_type(self) -> str:
        """``VOLUME``, ``LABEL``, ``OVERVIEW`` or ``THUMBNAIL``."""
        return self.image.image_type

    @property
    def urls(self) -> tuple[str, ...]:
        """URLs of the instances."""
        return tuple(im.url for im in self.images)

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """Rows and columns of the total pixel matrix."""
        return self.image.matrix_shape

    @property
    def tile_shape(self) -> tuple[int, int]:
        """Rows and columns of a tile."""
        return self.image.tile_shape

    @property
    def samples(self) -> int:
        """Samples per pixel."""
        return self.image.samples

    @property
    def dtype(self) -> np.dtype[Any]:
        """dtype of the pixels."""
        return self.image.dtype

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        """Spacing between rows and between columns, in mm."""
        return self.image.pixel_spacing

    @property
    def photometric_interpretation(self) -> str:
        """Photometric interpretation of the decoded pixels."""
        header = self.image.index.header
        return output_photometric(
            header.description, as_rgb=not self.raw, tsyntax=str(header.transfer_syntax)
        )

    @property
    def squeezed(self) -> bool:
        """Whether [`array`][dicom_dask.images.level.Level.array] drops the channel and plane axes
        (one of each)."""
        return len(self.channels) == 1 and len(self.focal_planes) == 1

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of [`array`][dicom_dask.images.level.Level.array]: ``(y, x[, s])`` or ``(c, z, y,
        x[, s])``."""
        return self._view(self.squeezed).shape

    @property
    def tiles_present(self) -> np.ndarray:
        """Boolean tile-present mask ``(channels, planes, tile rows, tile columns)``."""
        return self.manifest.present

    def __repr__(self) -> str:
        return (
            f"Level({self.image_type}, {format_size(*self.matrix_shape[::-1])}, tile="
            f"{format_size(*self.tile_shape[::-1], label=False)}, shape={self.shape}, "
            f"tiles={len(self.manifest)}/{int(np.prod(self.manifest.grid_shape))}, "
            f"instances={len(self.images)})"
        )

    # -- arrays ---------------------------------------------------------------------
    def _codecs(self, axes: str) -> list[dict[str, Any]]:
        return frame_codecs(
            self.image.index.header,
            frames_per_chunk=1,
            as_rgb=not self.raw,
            backend=self.backend,
            axes=axes,
        )

    def _view(self, squeeze: bool) -> LevelView:
        """Axes, shape, chunk shape and manifest grid of the (squeezed) array."""
        c, z = len(self.channels), len(self.focal_planes)
        rows, cols = self.matrix_shape
        th, tw = self.tile_shape
        _, _, ny, nx = self.manifest.grid_shape
        s = self.samples
        tail_axes = "s" if s > 1 else ""
        tail = (s,) if s > 1 else ()
        tail_grid = (1,) if s > 1 else ()
        if squeeze:
            if c != 1 or z != 1:
                raise ValueError(f"cannot squeeze a level with {c} channels and {z} planes")
            return LevelView(
                "yx" + tail_axes, (rows, cols, *tail), (th, tw, *tail), (ny, nx, *tail_grid)
            )
        return LevelView(
            "czyx" + tail_axes,
            (c, z, rows, cols, *tail),
            (1, 1, th, tw, *tail),
            (c, z, ny, nx, *tail_grid),
        )

    def reader(self, *, squeeze: bool | None = None, threads: int = 1) -> Any:
        """The array-like (manifest + decoder) the dask graph reads through."""
        from dicom_dask.chunks.reader import ManifestArray

        squeeze = self.squeezed if squeeze is None else squeeze
        view = self._view(squeeze)
        return ManifestArray(
            DicomStore(
                storage_options=self.storage_options,
                versions=versions_of(im.index for im in self.images),
            ),
            "",
            shape=view.shape,
            chunk_shape=view.chunk_shape,
            dtype=self.dtype,
            codecs=self._codecs(view.axes),
            fill_value=self.fill_value,
            label=_TileLabel(view.axes),
            manifest=self.manifest.reshape(view.grid),
            threads=threads,
        )

    def default_chunks(self, *, squeeze: bool | None = None) -> tuple[int, ...]:
        """Dask chunks: whole tiles, about [`chunk_edge`][dicom_dask.images.level.Level] pixels on a
        side."""
        squeeze = self.squeezed if squeeze is None else squeeze
        view = self._view(squeeze)
        out = []
        for axis, size, tile in zip(view.axes, view.shape, view.chunk_shape, strict=True):
            if axis in "yx":
                out.append(min(size, tile * max(1, round(self.chunk_edge / tile))))
            else:
                out.append(tile)
        return tuple(out)

    def to_dask(self, *, chunks: Any = None, squeeze: bool | None = None) -> dask.array.Array:
        """The level as a dask array (see [`array`][dicom_dask.images.level.Level.array]);
        ``chunks`` as in dask."""
        from dask.base import tokenize

        from dicom_dask.images.lazy import fused_transformed_dask, reader_dask

        reader = self.reader(squeeze=squeeze)
        chunks = self.default_chunks(squeeze=squeeze) if chunks is None else chunks
        digest = hashlib.sha1(  # dask's tokenize of the nested codecs costs ~0.3 ms
            json.dumps(
                [self.urls, reader.decoder.codecs, reader.shape, repr(self.fill_value)]
            ).encode()
            + self.manifest.offsets.tobytes()
            + self.manifest.url_index.tobytes(),
            usedforsecurity=False,  # a name for dask's graph, not a signature
        ).hexdigest()
        token = tokenize(digest, chunks)
        array = reader_dask(reader, chunks, f"dicom-slide-{token}")
        if self.transform is None:
            return array
        axes = self._view(self.squeezed if squeeze is None else squeeze).axes
        transformer = self.transform
        if axes.startswith("yx"):  # one channel and plane: its transform for every block
            transformer = self._single(0, 0)
        roles = axes.replace("c", "f").replace("z", "f")
        name = f"dicom-slide-transformed-{tokenize(token, self.transform.options.to_dict())}"
        # transformed while read: slicing the transformed level reads only what it selects
        return fused_transformed_dask(reader, array, transformer, roles, name)[0]

    def _single(self, channel: int, plane: int) -> FrameTransformer:
        """The level's transformer reduced to one channel and plane."""
        assert self.transform is not None
        return self.transform.with_frames(self.transform.frames[channel, plane])

    def transformed(self, **switches: Any) -> Level:
        """The level with the pixel transform chain applied lazily (see ``Frames.transformed``).

        Each optical path (or segment) gets the transform of the instance that holds it.
        """
        return self.with_transform(TransformOptions.coerce(**switches))

    def with_transform(self, options: TransformOptions) -> Level:
        """The level with ``options``' transform chain (see
        [`transformed`][dicom_dask.images.level.Level.transformed])."""
        datasets = [im.dataset for im in self.images]
        owner = {
            (ch.kind, ch.identifier): i for i, im in enumerate(self.images) for ch in im.channels
        }
        frames = np.zeros((len(self.channels), len(self.focal_planes), 2), dtype=np.int64)
        for c, ch in enumerate(self.channels):
            frames[c, :, 0] = owner[(ch.kind, ch.identifier)]
        transformer = FrameTransformer(datasets, frames, options, names=list(self.urls))
        return replace(self, transform=transformer)

    @cached_property
    def array(self) -> dask.array.Array:
        """The level as a dask array: ``(y, x[, s])``, or ``(c, z, y, x[, s])``."""
        return self.to_dask()

    def present_mask(self) -> dask.array.Array:
        """Lazy boolean mask of [`array`][dicom_dask.images.level.Level.array]'s shape: ``True``
        where a tile exists."""
        import dask.array as da

        view = self._view(self.squeezed)
        present = self.tiles_present
        if self.squeezed:
            present = present[0, 0]
        grid = da.from_array(present, chunks=present.shape)
        for i, axis in enumerate(view.axes):
            if axis in "yx":
                grid = da.repeat(grid, view.chunk_shape[i], axis=i)
        grid = grid[tuple(slice(0, n) for n in view.shape[: grid.ndim])]
        if "s" in view.axes:
            grid = da.broadcast_to(grid[..., np.newaxis], view.shape)
        return grid.rechunk(self.default_chunks())

    def read_region(
        self,
        location: tuple[int, int],
        size: tuple[int, int],
        *,
        channel: int = 0,
        plane: int = 0,
        threads: int | None = None,
    ) -> np.ndarray:
        """Read ``size = (width, height)`` pixels at ``location = (x, y)`` of this level.

        Pixels outside the matrix read as the fill value. Tiles are fetched in one
        batched request and decoded in ``threads`` threads (default: all cores).
        """
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        if w < 0 or h < 0:
            raise ValueError(f"size must be non-negative, got {size}")
        threads = threads or config_threads()
        reader = self.reader(squeeze=False, threads=threads)
        rows, cols = self.matrix_shape
        y0, y1 = max(y, 0), min(y + h, rows)
        x0, x1 = max(x, 0), min(x + w, cols)
        if (y0, y1, x0, x1) == (y, y + h, x, x + w) and h and w:
            out = reader[channel, plane, y0:y1, x0:x1]
        else:
            tail = (self.samples,) if self.samples > 1 else ()
            out = np.full((h, w, *tail), self.fill_value, dtype=self.dtype)
            if y1 > y0 and x1 > x0:
                out[y0 - y : y1 - y, x0 - x : x1 - x] = reader[channel, plane, y0:y1, x0:x1]
        if self.transform is not None:
            out = self._transform_region(out, channel, plane, threads)
        return out

    def _transform_region(
        self, region: np.ndarray, channel: int, plane: int, threads: int
    ) -> np.ndarray:
        """Apply the level's transform to a region, in bands of rows across threads."""
        from dicom_dask.frames.threads import pool

        single = self._single(channel, plane)
        tail = (3,) if single.adds_samples else ()
        out = np.empty(region.shape + tail, dtype=np.dtype(single.options.dtype))
        band = max(1, self.tile_shape[0])
        starts = range(0, region.shape[0], band)

        def one(start: int) -> None:
            apply_block(
                region[start : start + band], single, "", None, out=out[start : start + band]
            )

        if threads > 1 and len(starts) > 1:
            for _ in pool().map(one, starts):
                pass
        else:
            for start in starts:
                one(start)
        return out

    # -- geometry -------------------------------------------------------------------
    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix: ``(row, column, plane, 1)`` indices -> slide ``(x, y, z, 1)`` in mm.

        Built from Image Orientation (Slide), the Total Pixel Matrix origin and the
        pixel spacing; the pixel index refers to the pixel's centre, as in highdicom.
        """
        if self.pixel_spacing is None:
            raise LayoutError(
                f"{self.urls[0]}: no (0028,0030) Pixel Spacing, cannot map pixels to the slide"
            )
        dy, dx = self.pixel_spacing
        o = np.asarray(self.image.orientation, dtype=np.float64)
        row_dir, col_dir = o[:3], o[3:]
        normal = np.cross(row_dir, col_dir)
        z_step = (
            (self.focal_planes[1] - self.focal_planes[0]) / 1000.0
            if len(self.focal_planes) > 1
            else 0.0
        )
        out = np.eye(4)
        out[:3, 0] = col_dir * dy
        out[:3, 1] = row_dir * dx
        out[:3, 2] = normal * z_step
        out[:3, 3] = [*self.image.origin, self.focal_planes[0] / 1000.0]
        return out

    def map_pixel_indices_to_slide_coordinates(self, indices: Any) -> np.ndarray:
        """``(n, 2)`` pixel indices ``(column, row)`` -> ``(n, 3)`` slide ``(x, y, z)`` mm.

        The same convention as highdicom's ``PixelToReferenceTransformer`` and
        dicomslide's function of the same name.
        """
        ij = np.atleast_2d(np.asarray(indices, dtype=np.float64))
        if ij.shape[-1] != 2:
            raise ValueError(f"expected (n, 2) (column, row) indices, got shape {ij.shape}")
        homog = np.stack([ij[:, 1], ij[:, 0], np.zeros(len(ij)), np.ones(len(ij))])
        return (self.affine @ homog)[:3].T

    def map_slide_coordinates_to_pixel_indices(self, coordinates: Any) -> np.ndarray:
        """``(n, 2 or 3)`` slide coordinates in mm -> ``(n, 2)`` ``(column, row)`` (float)."""
        xyz = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
        if xyz.shape[-1] == 2:
            xyz = np.concatenate([xyz, np.zeros((len(xyz), 1))], axis=1)
        a = self.affine[:3, :2]
        rc, *_ = np.linalg.lstsq(a, (xyz - self.affine[:3, 3]).T, rcond=None)
        return np.stack([rc[1], rc[0]], axis=1)


def merge_level(
    images: Sequence[TiledImage],
    *,
    raw: bool = False,
    backend: str = "auto",
    fill_value: int | float = 0,
    storage_options: StorageOptions = None,
    chunk_edge: int = CHUNK_EDGE,
) -> Level:
    """Merge instances of one level (same matrix) onto one chunk grid.

    Parameters
    ----------
    images : sequence of TiledImage
        Instances with the same matrix, tile size, pixel type and encoding (optical
        paths, focal planes).
    raw, backend, fill_value, storage_options, chunk_edge
        As in [`open_slide`][dicom_dask.images.slide.open_slide].

    Raises
    ------
    LayoutError
        When the instances differ in tile or matrix size, pixel type or encoding, or
        two of them hold the same tile.
    """
    first = images[0]
    ref_codecs = frame_codecs(
        first.index.header, frames_per_chunk=1, as_rgb=True, backend="pydicom", axes="czyxs"
    )
    channels: dict[tuple[str, str], int] = {}
    planes: dict[float, int] = {}
    for im in images:
        same = (
            im.tile_shape == first.tile_shape
            and im.matrix_shape == first.matrix_shape
            and im.dtype == first.dtype
            and im.samples == first.samples
        )
        codecs = (
            ref_codecs
            if im is first
            else frame_codecs(
                im.index.header, frames_per_chunk=1, as_rgb=True, backend="pydicom", axes="czyxs"
            )
        )
        if not same or codecs != ref_codecs:
            raise LayoutError(
                f"{im.url} and {first.url} are instances of one pyramid level but differ in "
                "tile size, matrix size, pixel type or encoding; open them separately"
            )
        for ch in im.channels:
            channels.setdefault((ch.kind, ch.identifier), len(channels))
        for z in im.focal_planes:
            planes.setdefault(round(z, 6), len(planes))
    plane_order = sorted(planes)
    plane_index = {z: i for i, z in enumerate(plane_order)}
    _, _, ny, nx = first.grid_shape
    grid = (len(channels), len(plane_order), ny, nx)
    placements = []
    for im in images:
        chan_map = np.array([channels[(ch.kind, ch.identifier)] for ch in im.channels])
        plane_map = np.array([plane_index[round(z, 6)] for z in im.focal_planes])
        t = im.frame_tiles
        coords = np.stack([chan_map[t[:, 0]], plane_map[t[:, 1]], t[:, 2], t[:, 3]], axis=1)
        per_frame = frame_chunks(im.index, storage_options=storage_options)
        placements.append((coords, per_frame))
    all_channels = {(ch.kind, ch.identifier): ch for im in images for ch in im.channels}
    return Level(
        images=tuple(images),
        manifest=place_frames(placements, grid),
        channels=tuple(all_channels[k] for k in channels),
        focal_planes=tuple(plane_order),
        raw=raw,
        backend=backend,
        fill_value=fill_value,
        storage_options=storage_options,
        chunk_edge=chunk_edge,
    )
