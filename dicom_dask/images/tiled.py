"""Tiled images: where each frame of a total pixel matrix lies, and its chunk manifest.

A tiled instance (VL Whole Slide Microscopy, Segmentation or Parametric Map with a
total pixel matrix) is described once, from its header, as a `TiledImage`:
the matrix and tile shapes, its channels (optical paths, or segments), its focal
planes, and an ``(frames, 4)`` table of ``(channel, plane, tile row, tile column)``
per frame. TILED_FULL positions follow the standard's frame order (columns fastest,
then rows, then focal planes, then optical paths or segments); TILED_SPARSE
positions come from Plane Position (Slide) per frame. Nothing here imports zarr or
dask.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.chunks.manifest import INLINE, MISSING, ChunkManifest
from dicom_dask.errors import LayoutError, LayoutWarning
from dicom_dask.frames import FrameIndex, open_file
from dicom_dask.frames.functional_groups import SlidePositions, slide_positions
from dicom_dask.frames.sizes import format_size
from dicom_dask.frames.values import fast_get

__all__ = [
    "ChannelInfo",
    "TiledImage",
    "frame_chunks",
    "is_tiled",
    "place_frames",
    "tiled_image",
]

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"
#: Largest tile grid allocated for an instance with far fewer frames than tiles.
MAX_GRID_CELLS = 2**24
#: Largest pixel data read whole to re-chunk unaligned 1-bit frames (bytes).
MAX_INLINE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ChannelInfo:
    """One channel of a tiled image: an optical path, or a segment.

    ``identifier`` is the Optical Path Identifier, or the Segment Number as text.
    """

    identifier: str
    kind: str = "optical_path"
    description: str = ""
    wavelength_nm: float | None = None
    color: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "identifier": self.identifier,
            "kind": self.kind,
            "description": self.description,
            "wavelength_nm": self.wavelength_nm,
            "color": self.color,
        }


def _float_list(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == n else None


def _optical_paths(ds: Dataset) -> list[ChannelInfo]:
    out = []
    for k, item in enumerate(ds.get("OpticalPathSequence") or []):
        color = None
        codes = item.get("IlluminationColorCodeSequence") or []
        if codes:
            color = str(codes[0].get("CodeMeaning", "")) or None
        wavelength = fast_get(item, "IlluminationWaveLength")
        out.append(
            ChannelInfo(
                identifier=str(item.get("OpticalPathIdentifier", k)),
                kind="optical_path",
                description=str(item.get("OpticalPathDescription", "") or ""),
                wavelength_nm=None if wavelength in (None, "") else float(wavelength),
                color=color,
            )
        )
    n = int(fast_get(ds, "NumberOfOpticalPaths", 0) or 0)
    while len(out) < n:
        out.append(ChannelInfo(identifier=str(len(out))))
    return out or [ChannelInfo(identifier="0")]


def _segments(ds: Dataset) -> list[ChannelInfo]:
    return [
        ChannelInfo(
            identifier=str(int(item.SegmentNumber)),
            kind="segment",
            description=str(item.get("SegmentLabel", "") or ""),
        )
        for item in ds.get("SegmentSequence") or []
    ]


def _shared(ds: Dataset, sequence: str) -> Dataset | None:
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0] and shared[0][sequence].value:
        return shared[0][sequence][0]
    return None


def is_tiled(ds: Dataset) -> bool:
    """Whether ``ds`` has a total pixel matrix (or is a single-frame slide image)."""
    return "TotalPixelMatrixRows" in ds or (
        "DimensionOrganizationType" in ds
        and str(ds.DimensionOrganizationType).upper().startswith("TILED")
    )


@dataclass(frozen=True, eq=False)
class TiledImage:
    """One tiled instance: its total pixel matrix and where each frame lies.

    Attributes
    ----------
    index : FrameIndex
        The file's header and frame byte ranges.
    organization : str
        ``"TILED_FULL"`` or ``"TILED_SPARSE"``.
    image_type : str
        Value 3 of Image Type: ``VOLUME``, ``LABEL``, ``OVERVIEW``, ``THUMBNAIL``.
    matrix_shape : (int, int)
        Total Pixel Matrix Rows and Columns.
    tile_shape : (int, int)
        Rows and Columns of a frame.
    channels : tuple of ChannelInfo
        Optical paths, or segments of a (binary/fractional) segmentation.
    focal_planes : tuple of float
        Z offset of each focal plane in µm (index order when not known).
    frame_tiles : numpy.ndarray
        ``(frames, 4)`` int64 ``(channel, plane, tile row, tile column)`` per frame.
    pixel_spacing : (float, float) or None
        Spacing between rows and between columns, in mm.
    origin : (float, float)
        X/Y offset of the matrix origin in the slide coordinate system (mm).
    orientation : tuple of 6 float
        Image Orientation (Slide): row then column direction cosines.
    positions : SlidePositions or None
        Parsed per-frame positions (TILED_SPARSE), cached in index sidecars.
    """

    index: FrameIndex
    organization: str
    image_type: str
    matrix_shape: tuple[int, int]
    tile_shape: tuple[int, int]
    channels: tuple[ChannelInfo, ...]
    focal_planes: tuple[float, ...]
    frame_tiles: np.ndarray = field(repr=False)
    pixel_spacing: tuple[float, float] | None
    origin: tuple[float, float]
    orientation: tuple[float, ...]
    positions: SlidePositions | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The instance's URL."""
        return self.index.url

    @property
    def dataset(self) -> Dataset:
        """The header (no pixel data)."""
        return self.index.header.dataset

    @property
    def grid_shape(self) -> tuple[int, int, int, int]:
        """``(channels, planes, tile rows, tile columns)``."""
        th, tw = self.tile_shape
        rows, cols = self.matrix_shape
        return (len(self.channels), len(self.focal_planes), -(-rows // th), -(-cols // tw))

    @property
    def samples(self) -> int:
        """Samples per pixel."""
        return self.index.header.description.samples_per_pixel

    @property
    def dtype(self) -> np.dtype[Any]:
        """The decoded dtype."""
        return self.index.header.description.dtype

    def __repr__(self) -> str:
        return (
            f"TiledImage({self.url!r}, {self.image_type}, {self.organization}, "
            f"matrix={self.matrix_shape}, tile={self.tile_shape}, grid={self.grid_shape})"
        )


def _tiled_full(n: int, grid: tuple[int, int, int, int], url: str) -> np.ndarray:
    total = int(np.prod(grid))
    if n != total:
        c, z, ny, nx = grid
        raise LayoutError(
            f"{url}: TILED_FULL with {ny} x {nx} tiles, {z} focal plane(s) and {c} "
            f"optical path(s)/segment(s) needs {total} frames, (0028,0008) 'Number of "
            f"Frames' is {n}"
        )
    return np.indices(grid, dtype=np.int64).reshape(len(grid), -1).T.copy()  # C order


def _sparse(
    positions: SlidePositions,
    grid: tuple[int, int, int, int],
    tile: tuple[int, int],
    channels: list[ChannelInfo],
    url: str,
) -> tuple[np.ndarray, tuple[float, ...]]:
    n = len(positions.rows)
    r0, c0 = positions.rows - 1, positions.columns - 1
    bad = (r0 % tile[0] != 0) | (c0 % tile[1] != 0) | (r0 < 0) | (c0 < 0)
    tr, tc = r0 // tile[0], c0 // tile[1]
    bad |= (tr >= grid[2]) | (tc >= grid[3])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise LayoutError(
            f"{url}: frame {k + 1} lies at row {positions.rows[k]}, column "
            f"{positions.columns[k]} of the total pixel matrix; expected 1-based positions "
            f"on the {tile[0]} x {tile[1]} tile grid inside {grid[2]} x {grid[3]} tiles"
        )
    if positions.z_offsets is not None:
        planes_z, plane = np.unique(np.round(positions.z_offsets, 6), return_inverse=True)
        planes = tuple(float(z) for z in planes_z)
    else:
        plane = np.zeros(n, dtype=np.int64)
        planes = (0.0,)
    if positions.channels is not None:
        ids = [c.identifier for c in channels]
        lookup = {ident: i for i, ident in enumerate(ids)}
        chan = np.empty(n, dtype=np.int64)
        for k, value in enumerate(positions.channels.tolist()):
            i = lookup.get(str(value))
            if i is None:
                raise LayoutError(
                    f"{url}: frame {k + 1} refers to channel {value!r}, which is not among "
                    f"the instance's {[c.identifier for c in channels]}"
                )
            chan[k] = i
    elif len(channels) == 1:
        chan = np.zeros(n, dtype=np.int64)
    else:
        raise LayoutError(
            f"{url}: {len(channels)} optical paths/segments but no per-frame identification "
            "to tell which frame belongs to which"
        )
    tiles = np.stack([chan, plane.astype(np.int64), tr, tc], axis=1)
    flat = np.ravel_multi_index(tiles.T, (len(channels), len(planes), grid[2], grid[3]))
    uniq, counts = np.unique(flat, return_counts=True)
    if (counts > 1).any():
        # as OpenSlide (libdicom's frame index) and highdicom's total pixel matrix: the
        # later frame is drawn over the earlier ones (see place_frames)
        dup = int(uniq[counts > 1][0])
        frames = np.flatnonzero(flat == dup) + 1
        warnings.warn(
            f"{url}: {int((counts - 1).sum())} TILED_SPARSE frame(s) lie on a tile that a later "
            f"frame covers again (e.g. frames {frames.tolist()}); the last frame of each tile "
            "is drawn, as OpenSlide and highdicom do",
            LayoutWarning,
            stacklevel=3,
        )
    return tiles, planes


def _matrix_shape(ds: Dataset, tile: tuple[int, int], n: int, url: str) -> tuple[int, int]:
    """Total Pixel Matrix Rows and Columns (a single frame's size when absent)."""
    matrix_rows = fast_get(ds, "TotalPixelMatrixRows")
    matrix_columns = fast_get(ds, "TotalPixelMatrixColumns")
    if matrix_rows is not None and matrix_columns is not None:
        return (int(matrix_rows), int(matrix_columns))
    if n == 1:
        return tile
    raise LayoutError(
        f"{url}: no (0048,0006)/(0048,0007) Total Pixel Matrix Columns/Rows: not a tiled image"
    )


def _organization(ds: Dataset, n: int) -> str:
    """``TILED_FULL`` or ``TILED_SPARSE``: as declared, else guessed from per-frame groups."""
    organization = str(fast_get(ds, "DimensionOrganizationType", "") or "").upper()
    if organization in ("TILED_FULL", "TILED_SPARSE"):
        return organization
    if n == 1 or "PerFrameFunctionalGroupsSequence" not in ds:
        return "TILED_FULL"
    return "TILED_SPARSE"


def _image_kind(ds: Dataset) -> str:
    """Value 3 of Image Type (``VOLUME`` when absent)."""
    image_type = fast_get(ds, "ImageType")
    if isinstance(image_type, str):  # a single value
        image_type = [image_type]
    return str(image_type[2]).upper() if image_type and len(image_type) > 2 else "VOLUME"


def _channels(ds: Dataset) -> list[ChannelInfo]:
    """Optical paths, or the segments of a binary or fractional segmentation."""
    channels = _optical_paths(ds)
    sop = str(fast_get(ds, "SOPClassUID", ""))
    if sop == SEGMENTATION and str(fast_get(ds, "SegmentationType", "")).upper() != "LABELMAP":
        return _segments(ds) or channels
    return channels


def _check_grid(
    matrix: tuple[int, int], tile: tuple[int, int], planes: int, cells: int, n: int, url: str
) -> None:
    """Refuse empty matrices, and tile grids far larger than the frames could fill."""
    if matrix[0] < 1 or matrix[1] < 1 or planes < 1:
        raise LayoutError(
            f"{url}: (0048,0006)/(0048,0007) Total Pixel Matrix "
            f"{format_size(matrix[1], matrix[0])} with "
            f"{planes} focal planes; expected positive sizes"
        )
    if cells > MAX_GRID_CELLS and cells > 64 * n:
        raise LayoutError(
            f"{url}: the header claims a {format_size(matrix[1], matrix[0])} total pixel matrix "
            f"({cells} tiles of {format_size(tile[1], tile[0], label=False)}) but holds {n} "
            "frames; refusing to "
            f"allocate a tile grid of more than {MAX_GRID_CELLS} cells for it"
        )


def _full_planes(ds: Dataset, planes: int) -> tuple[float, ...]:
    """Z offsets (µm) of the focal planes of a TILED_FULL instance."""
    measures = _shared(ds, "PixelMeasuresSequence")
    spacing = fast_get(measures, "SpacingBetweenSlices") if measures is not None else None
    step = float(spacing) * 1000.0 if spacing not in (None, "") else 1.0
    # a plane position shared by all frames gives the first plane's z (µm)
    shared_pos = _shared(ds, "PlanePositionSlideSequence")
    z0 = fast_get(shared_pos, "ZOffsetInSlideCoordinateSystem") if shared_pos else None
    z0 = float(z0) if z0 not in (None, "") else 0.0
    return tuple(z0 + k * step for k in range(planes))


def _pixel_spacing(ds: Dataset, matrix: tuple[int, int]) -> tuple[float, float] | None:
    """Pixel Spacing of the shared measures, else the Imaged Volume over the matrix."""
    measures = _shared(ds, "PixelMeasuresSequence")
    if measures is not None:
        pair = _float_list(fast_get(measures, "PixelSpacing"), 2)
        if pair is not None:
            return (pair[0], pair[1])
    width, height = fast_get(ds, "ImagedVolumeWidth"), fast_get(ds, "ImagedVolumeHeight")
    if width and height:
        return (float(height) / matrix[0], float(width) / matrix[1])
    return None


def _origin(ds: Dataset) -> tuple[float, float]:
    """X/Y offset of the Total Pixel Matrix origin (mm)."""
    origin_items = ds.get("TotalPixelMatrixOriginSequence") or []
    if not origin_items:
        return (0.0, 0.0)
    item = origin_items[0]
    return (
        float(fast_get(item, "XOffsetInSlideCoordinateSystem", 0.0) or 0.0),
        float(fast_get(item, "YOffsetInSlideCoordinateSystem", 0.0) or 0.0),
    )


def tiled_image(index: FrameIndex, *, positions: SlidePositions | None = None) -> TiledImage:
    """Describe the tiled instance of ``index``.

    Parameters
    ----------
    positions : SlidePositions, optional
        Already parsed per-frame positions (from an index sidecar).

    Raises
    ------
    LayoutError
        When frames cannot be placed on the tile grid.
    """
    header = index.header
    ds = header.dataset
    url = header.url
    n = header.description.number_of_frames
    tile = (header.description.rows, header.description.columns)
    matrix = _matrix_shape(ds, tile, n, url)
    organization = _organization(ds, n)
    kind = _image_kind(ds)
    channels = _channels(ds)
    planes_n = int(fast_get(ds, "TotalPixelMatrixFocalPlanes", 1) or 1)
    ny, nx = -(-matrix[0] // tile[0]), -(-matrix[1] // tile[1])
    _check_grid(matrix, tile, planes_n, ny * nx * planes_n * len(channels), n, url)
    if organization == "TILED_FULL":
        # segments, like optical paths, vary slowest
        tiles = _tiled_full(n, (len(channels), planes_n, ny, nx), url)
        planes = _full_planes(ds, planes_n)
    else:
        if positions is None:
            positions = slide_positions(ds, url=url, number_of_frames=n)
        tiles, planes = _sparse(positions, (len(channels), 1, ny, nx), tile, channels, url)
    orientation = _float_list(fast_get(ds, "ImageOrientationSlide"), 6) or (0, -1, 0, -1, 0, 0)
    return TiledImage(
        index=index,
        organization=organization,
        image_type=kind,
        matrix_shape=matrix,
        tile_shape=tile,
        channels=tuple(channels),
        focal_planes=planes,
        frame_tiles=tiles,
        pixel_spacing=_pixel_spacing(ds, matrix),
        origin=_origin(ds),
        orientation=tuple(float(v) for v in orientation),
        positions=positions,
    )


def frame_chunks(index: FrameIndex, *, storage_options: Any = None) -> ChunkManifest:
    """One chunk per frame of ``index``'s file, in frame order: ``(frames,)`` grid.

    Frames are byte ranges of the file, except unaligned 1-bit frames (which share
    bytes with their neighbours) and deflated datasets, which are carried inline,
    re-packed to start on a byte.
    """
    header = index.header
    ranges = index.ranges
    desc = header.description
    n = desc.number_of_frames
    if header.inline_pixel_data is None and ranges.frames_per_chunk == 1:
        return ChunkManifest(
            (index.url,),
            np.zeros(n, dtype=np.int32),
            ranges.offsets,
            ranges.lengths,
            ranges.encoding,
        )
    if header.inline_pixel_data is not None:
        value = header.inline_pixel_data
    else:
        start = int(header.element.value_offset)
        length = int(header.element.length or 0)
        if length > MAX_INLINE_BYTES:
            raise LayoutError(
                f"{index.url}: {n} unaligned 1-bit frames in {length} bytes of pixel data; "
                f"re-chunking them reads the pixel data whole, limited to {MAX_INLINE_BYTES}"
            )
        value = open_file(index.url, storage_options=storage_options).read(start, start + length)
    if desc.bits_allocated == 1:
        per = desc.rows * desc.columns * desc.samples_per_pixel
        bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8), bitorder="little")
        inline = [
            np.packbits(bits[k * per : (k + 1) * per], bitorder="little").tobytes()
            for k in range(n)
        ]
    else:
        size = desc.frame_nbytes
        inline = [bytes(value[k * size : (k + 1) * size]) for k in range(n)]
    return ChunkManifest(
        (),
        np.full(n, INLINE, dtype=np.int32),
        np.arange(n, dtype=np.uint64),
        np.array([len(b) for b in inline], dtype=np.uint64),
        None,
        inline,
    )


def place_frames(
    placements: Sequence[tuple[np.ndarray, ChunkManifest]], grid: tuple[int, ...]
) -> ChunkManifest:
    """Scatter per-frame manifests onto one chunk grid.

    ``placements`` holds, per instance, an ``(frames, len(grid))`` array of chunk
    coordinates and that instance's per-frame manifest (see `frame_chunks`).
    """
    if len(placements) == 1:  # one instance filling the grid in order (TILED_FULL)
        coords, manifest = placements[0]
        if len(coords) == int(np.prod(grid)) and np.array_equal(
            np.ravel_multi_index(tuple(coords.T), grid), np.arange(len(coords))
        ):
            return manifest.reshape(grid)
    urls: list[str] = []
    inline: list[bytes] = []
    url_index = np.full(grid, MISSING, dtype=np.int32)
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    encoding = np.zeros(grid, dtype=np.uint8)
    for coords, manifest in placements:
        if len(coords):  # frames of one instance on the same chunk: the last one is drawn
            flat = np.ravel_multi_index(tuple(coords.T), grid)
            if (np.diff(flat) > 0).all():  # increasing (as TILED_FULL): no chunk twice
                last = flat
            else:
                _, last = np.unique(flat[::-1], return_index=True)
            if len(last) < len(flat):
                keep = np.sort(len(flat) - 1 - last)
                coords = coords[keep]
                manifest = ChunkManifest(
                    manifest.urls,
                    manifest.url_index[keep],
                    manifest.offsets[keep],
                    manifest.lengths[keep],
                    manifest.encoding[keep],
                    manifest.inline,
                )
        where = tuple(coords.T)
        occupied = url_index[where] != MISSING
        if occupied.any():
            k = int(np.flatnonzero(occupied)[0])
            raise LayoutError(
                f"{manifest.urls[0] if manifest.urls else 'inline data'}: frame {k + 1} "
                f"falls on chunk {tuple(int(c) for c in coords[k])}, already taken by another "
                "instance of the same level (same optical path and focal plane)"
            )
        src = manifest.url_index
        remapped = src.copy()
        for i in range(len(manifest.urls)):
            remapped[src == i] = len(urls) + i
        urls.extend(manifest.urls)
        is_inline = src == INLINE
        off = manifest.offsets.copy()
        off[is_inline] += np.uint64(len(inline))
        inline.extend(manifest.inline)
        url_index[where] = remapped
        offsets[where] = off
        lengths[where] = manifest.lengths
        encoding[where] = manifest.encoding
    return ChunkManifest(tuple(urls), url_index, offsets, lengths, encoding, inline)
