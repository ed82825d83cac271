"""``to_dicom_slide``: a dask array, a `Level` or a `Slide` as a VL Whole Slide Microscopy pyramid.

Each level is one TILED_FULL instance. Tiles are encoded inside dask tasks -- one task
per block of whole tiles, about ``chunk_edge`` pixels on a side -- and the encoded
frames are streamed into the file one band of tile rows after the other (see
[`write_instance`][dicom_dask.integrations.writers.stream.write_instance]): at most a
couple of bands are in flight, whatever the size of the slide. Lower levels are
downsampled lazily from the level above (2 x 2 mean), so a level's pixels are never
held whole.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError
from dicom_dask.frames._io import StorageOptions, resolve_fs
from dicom_dask.frames.sizes import format_size
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide
from dicom_dask.integrations.writers.dataset import (
    LevelSpec,
    SlideContext,
    slide_context,
    slide_level_dataset,
)
from dicom_dask.integrations.writers.encode import (
    Encoder,
    downsample2,
    encode_block,
    transfer_syntax_uid,
)
from dicom_dask.integrations.writers.stream import EOT_THRESHOLD, Written, is_local, write_instance

if TYPE_CHECKING:
    import dask.array

__all__ = ["to_dicom_slide"]

#: Target edge of an encoding task's block, in pixels (rounded to whole tiles).
CHUNK_EDGE = 2048


class _Progress:
    """A one-line text progress bar over the frames written (any scheduler)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0

    def add(self, n: int) -> None:
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


def _band(tile: int, chunk_edge: int) -> int:
    return tile * max(1, round(chunk_edge / tile))


def encoded_bands(
    array: dask.array.Array,
    *,
    tile: tuple[int, int],
    encoder: Encoder,
    chunk_edge: int = CHUNK_EDGE,
    fill: Any = 0,
    progress: _Progress | None = None,
    window: int | None = None,
    spill: Any = None,
) -> Iterator[list[bytes]]:
    """Encoded frames of ``array`` ``(y, x[, s])`` in TILED_FULL order, a band at a time.

    The array is rechunked to blocks of whole tiles; each block is encoded by one dask
    task. Bands of blocks are computed ``window`` at a time, the next window while the
    current one is written. ``spill``, a zarr array of half the size, receives the 2 x 2
    means of the same blocks in the same computations: the next level is then read from
    it instead of decoding this one's source again.
    """
    import dask

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
    side = None if spill is None else _spilled(blocks, spill).to_delayed()
    if window is None:
        workers = _workers()
        window = max(1, -(-2 * workers // nx_blocks))
    starts = list(range(0, ny_blocks, window))

    def compute(start: int) -> list[Any]:
        stop = min(start + window, ny_blocks)
        rows = [list(delayed[i]) for i in range(start, stop)]
        flat = [d for row in rows for d in row]
        extra = []
        if side is not None:  # the same source blocks, shared in one computation
            last = side.shape[0] if stop == ny_blocks else min(stop, side.shape[0])
            extra = [d for i in range(start, last) for d in side[i]]
        results = dask.compute(*flat, *extra)
        return [results[k : k + nx_blocks] for k in range(0, len(flat), nx_blocks)]

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(compute, starts[0]) if starts else None
        for k in range(len(starts)):
            assert pending is not None
            rows = pending.result()
            pending = pool.submit(compute, starts[k + 1]) if k + 1 < len(starts) else None
            for row in rows:
                band = np.concatenate(row, axis=1)
                frames = [bytes(b) for b in band.ravel()]
                if progress is not None:
                    progress.add(len(frames))
                yield frames


def _blocks(array: dask.array.Array, tile: tuple[int, int], chunk_edge: int) -> Any:
    """``array`` in blocks of whole tiles, about ``chunk_edge`` on a side."""
    bh, bw = _band(tile[0], chunk_edge), _band(tile[1], chunk_edge)
    return array.rechunk((bh, bw, *array.shape[2:]))


def _spill_block(block: np.ndarray, target: Any, block_info: Any = None) -> np.ndarray:
    """Write the block where it belongs in ``target``; a 1 x 1 token for dask."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"][:2]
    target[r0:r1, c0:c1] = block
    return np.ones((1, 1), dtype=bool)


def _spilled(blocks: Any, target: Any) -> Any:
    """Tasks writing the 2 x 2 means of ``blocks`` into ``target`` (one per block)."""
    down: Any = downsample(blocks)
    return down.map_blocks(
        _spill_block,
        target=target,
        dtype=bool,
        chunks=((1,) * down.numblocks[0], (1,) * down.numblocks[1]),
        drop_axis=list(range(2, down.ndim)),
        meta=np.empty((0, 0), dtype=bool),
    )


def spill_target(array: Any, tile: tuple[int, int], chunk_edge: int, folder: str) -> Any:
    """An uncompressed zarr array for the next level, one chunk per block of this one."""
    import zarr

    down = downsample(_blocks(array, tile, chunk_edge))
    return zarr.create_array(
        store=folder,
        shape=down.shape,
        chunks=tuple(int(c) for c in down.chunksize),
        dtype=down.dtype,
        compressors=None,
        fill_value=0,
    )


def _workers() -> int:
    """Threads that compute: the cluster's, when a distributed client is active."""
    if "distributed" in sys.modules:  # importing it costs seconds: only if in use
        from distributed import default_client

        try:
            return max(1, sum(default_client().nthreads().values()))
        except ValueError:
            pass
    import dask

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def downsample(array: dask.array.Array) -> dask.array.Array:
    """Half the rows and columns of ``array`` (2 x 2 mean), lazily, chunk by chunk."""
    h, w = array.shape[0] // 2 * 2, array.shape[1] // 2 * 2
    if h == 0 or w == 0:
        raise LayoutError(f"cannot downsample a {array.shape[0]} x {array.shape[1]} level")
    trimmed = array[:h, :w]
    even = tuple(c if c % 2 == 0 else c + 1 for c in (trimmed.chunksize[0], trimmed.chunksize[1]))
    trimmed = trimmed.rechunk((*even, *array.shape[2:]))
    return trimmed.map_blocks(
        downsample2,
        chunks=(
            tuple(c // 2 for c in trimmed.chunks[0]),
            tuple(c // 2 for c in trimmed.chunks[1]),
            *trimmed.chunks[2:],
        ),
        dtype=array.dtype,
    )


def _as_dask(data: Any) -> dask.array.Array:
    import dask.array as da

    arr = data if isinstance(data, da.Array) else da.asarray(data)
    if arr.ndim == 3 and arr.shape[2] not in (1, 3):
        raise LayoutError(
            f"expected (y, x) or (y, x, samples) with 1 or 3 samples, got shape {arr.shape}"
        )
    if arr.ndim not in (2, 3):
        raise LayoutError(
            f"expected a (y, x[, samples]) array, got shape {arr.shape}; several optical "
            "paths or focal planes are written one instance each: select one"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return arr


def _level_array(level: Level) -> dask.array.Array:
    if not level.squeezed:
        raise LayoutError(
            f"{level.urls[0]}: a level with {len(level.channels)} optical paths and "
            f"{len(level.focal_planes)} focal planes; pass one of them as a dask array"
        )
    return _as_dask(level.array)


def _like_dataset(like: Slide | Level | Dataset | None) -> tuple[Dataset | None, Any]:
    """The source header and the pixel spacing reference ``(matrix shape, spacing)`` list."""
    if like is None:
        return None, []
    if isinstance(like, Dataset):
        return like, []
    levels = like.pyramid if isinstance(like, Slide) else (like,)
    return levels[0].image.dataset, [(lv.matrix_shape, lv.pixel_spacing) for lv in levels]


def _spacing(
    shape: tuple[int, int], refs: Sequence[Any], given: tuple[float, float] | None
) -> tuple[float, float]:
    if given is not None:
        return float(given[0]), float(given[1])
    for matrix, spacing in refs:
        if tuple(matrix) == tuple(shape) and spacing:
            return float(spacing[0]), float(spacing[1])
    for matrix, spacing in refs:
        if spacing:
            return (
                float(spacing[0]) * matrix[0] / shape[0],
                float(spacing[1]) * matrix[1] / shape[1],
            )
    return 0.00025, 0.00025  # 40x, a placeholder when nothing says otherwise


def _join(dest: str, name: str) -> str:
    return f"{dest.rstrip('/')}/{name}" if not is_local(dest) else os.path.join(dest, name)


def write_level(
    array: dask.array.Array,
    path: str,
    *,
    context: SlideContext,
    spec: LevelSpec,
    encoder: Encoder,
    instance_number: int,
    storage_options: StorageOptions,
    offset_table: str,
    eot_threshold: int,
    chunk_edge: int,
    progress: bool,
    label: str,
    spill: Any = None,
) -> Written:
    """Write one level: header, then its frames as dask encodes them (and spills the next)."""
    ds = slide_level_dataset(
        context,
        spec,
        transfer_syntax=encoder.transfer_syntax,
        photometric_interpretation=encoder.photometric_interpretation,
        lossy_method=encoder.lossy_method,
        instance_number=instance_number,
    )
    n = int(ds.NumberOfFrames)
    frame_bytes = spec.tile[0] * spec.tile[1] * spec.samples * spec.bits // 8
    bar = _Progress(n, label, progress)
    return write_instance(
        ds,
        encoded_bands(
            array,
            tile=spec.tile,
            encoder=encoder,
            chunk_edge=chunk_edge,
            progress=bar,
            spill=spill,
        ),
        path,
        number_of_frames=n,
        encapsulated=encoder.transfer_syntax != "1.2.840.10008.1.2.1",
        frame_bytes=frame_bytes,
        storage_options=storage_options,
        offset_table=offset_table,
        eot_threshold=eot_threshold,
    )


def to_dicom_slide(
    data: Any,
    dest: str | os.PathLike[str],
    *,
    like: Slide | Level | Dataset | None = None,
    tile: int | tuple[int, int] = 256,
    transfer_syntax: str = "jpeg",
    quality: int = 90,
    levels: int | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    associated: Sequence[str] | bool = False,
    series_description: str | None = None,
    storage_options: StorageOptions = None,
    offset_table: str = "auto",
    eot_threshold: int = EOT_THRESHOLD,
    chunk_edge: int = CHUNK_EDGE,
    scratch: str | None = None,
    progress: bool = True,
) -> list[str]:
    """Write ``data`` as a VL Whole Slide Microscopy pyramid in the folder ``dest``.

    Parameters
    ----------
    data : dask array, numpy array, Level or Slide
        ``(y, x[, samples])`` pixels of the highest resolution. A
        [`Slide`][dicom_dask.images.slide.Slide] writes its own levels (and is its own
        ``like``); a [`Level`][dicom_dask.images.level.Level] is one level.
    dest : str or path
        A folder, local or an fsspec URL (``s3://bucket/out/``); the levels are written
        as ``level-0.dcm``, ``level-1.dcm``... and associated images as ``label.dcm``,
        ``overview.dcm``.
    like : Slide, Level or pydicom Dataset, optional
        The source: patient, study, Frame of Reference, container, specimen, optical
        path, orientation, origin and pixel spacing are taken from it, so that the
        result overlays it.
    tile : int or (int, int)
        Rows and columns of a frame.
    transfer_syntax : str
        ``"jpeg"`` (baseline), ``"jpeg2000"``, ``"jpeg2000-lossless"``, ``"htj2k"``,
        ``"htj2k-lossless"``, ``"jpegls"`` (lossless), ``"rle"``, ``"explicit"`` (native
        Explicit VR Little Endian), or a transfer syntax UID.
    quality : int
        JPEG quality, or JPEG 2000 PSNR (dB), for the lossy syntaxes.
    levels : int, optional
        Number of levels, each half the size of the one above. Default: a ``Slide``'s
        own levels; otherwise halve until a level fits in one tile.
    pixel_spacing : (float, float), optional
        Row and column spacing of level 0 in mm (default: from ``like``).
    associated : bool or sequence of str
        Copy ``"label"``/``"overview"``/``"thumbnail"`` images of ``like`` (``True``: all).
    offset_table : {"auto", "bot", "eot", "empty"}
        Basic Offset Table, or an Extended Offset Table when the pixel data may pass
        ``eot_threshold`` bytes (4 GiB).
    chunk_edge : int
        Edge of the block one dask task encodes, in pixels (rounded to whole tiles).
    scratch : str, optional
        A local folder (default: the system's temporary folder) where each level's
        2 x 2 means are spilled, uncompressed, while the level is written, so that the
        next level does not decode the source again; removed at the end. With a
        cluster of several machines it must be a folder they all see.
    progress : bool
        Print a progress bar per level.

    Returns
    -------
    list of str
        The written files, level 0 first, then the associated images.
    """
    source_levels: list[dask.array.Array] | None = None
    if isinstance(data, Slide):
        like = data if like is None else like
        source_levels = [_level_array(lv) for lv in data.pyramid]
        base = source_levels[0]
    elif isinstance(data, Level):
        like = data if like is None else like
        base = _level_array(data)
    else:
        base = _as_dask(data)
    tile_shape = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    ts = transfer_syntax_uid(transfer_syntax)
    samples = base.shape[2] if base.ndim == 3 else 1
    encoder = Encoder(ts, samples, str(base.dtype), quality)
    like_ds, refs = _like_dataset(like)
    context = slide_context(like_ds, samples=samples, series_description=series_description)
    if levels is None:
        if source_levels is not None:
            levels = len(source_levels)
        else:
            levels = 1
            size = max(base.shape[:2])
            while size > max(tile_shape):
                size //= 2
                levels += 1
    options = {
        "storage_options": storage_options,
        "offset_table": offset_table,
        "eot_threshold": eot_threshold,
        "chunk_edge": chunk_edge,
        "progress": progress,
    }
    dest_text = os.fspath(dest)
    if is_local(dest_text):
        os.makedirs(dest_text.removeprefix("file://"), exist_ok=True)
    else:
        fs, root = resolve_fs(dest_text, storage_options)
        fs.makedirs(root, exist_ok=True)
    spacing0 = _spacing(base.shape[:2], refs, pixel_spacing)
    written: list[str] = []
    array = base
    scratch_dir = tempfile.mkdtemp(prefix="dicom-dask-levels-", dir=scratch)
    spill: Any = None
    try:
        for k in range(levels):
            if k > 0:
                same = source_levels is not None and k < len(source_levels)
                array = source_levels[k] if same and source_levels else _from_spill(spill)
            spill = None
            if k + 1 < levels and not (source_levels and k + 1 < len(source_levels)):
                folder = os.path.join(scratch_dir, f"level-{k + 1}.zarr")
                spill = spill_target(array, tile_shape, chunk_edge, folder)
            written.append(
                _write_one(
                    array,
                    k,
                    dest_text,
                    spill=spill,
                    base_shape=base.shape[:2],
                    spacing0=spacing0,
                    refs=refs if source_levels is not None and pixel_spacing is None else None,
                    context=context,
                    encoder=encoder,
                    tile=tile_shape,
                    options=options,
                )
            )
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    written += _write_associated(
        like,
        associated,
        dest_text,
        context=context,
        encoder_args=(ts, quality),
        storage_options=storage_options,
        progress=progress,
        start=levels + 1,
    )
    return written


def _from_spill(spill: Any) -> dask.array.Array:
    import dask.array as da

    return da.from_zarr(spill)


def _write_one(
    array: dask.array.Array,
    k: int,
    dest: str,
    *,
    spill: Any,
    base_shape: tuple[int, ...],
    spacing0: tuple[float, float],
    refs: Any,
    context: SlideContext,
    encoder: Encoder,
    tile: tuple[int, int],
    options: dict[str, Any],
) -> str:
    """Write level ``k`` of the pyramid."""
    rows, cols = array.shape[:2]
    spacing = (
        _spacing((rows, cols), refs, None)
        if refs is not None
        else (spacing0[0] * base_shape[0] / rows, spacing0[1] * base_shape[1] / cols)
    )
    spec = LevelSpec(
        rows,
        cols,
        tile,
        encoder.samples,
        array.dtype.itemsize * 8,
        array.dtype.kind == "i",
        spacing,
        resampled=k > 0,
    )
    result = write_level(
        array,
        _join(dest, f"level-{k}.dcm"),
        context=context,
        spec=spec,
        encoder=encoder,
        instance_number=k + 1,
        label=f"level {k} ({format_size(cols, rows)})",
        spill=spill,
        **options,
    )
    return result.url


def _write_associated(
    like: Any,
    associated: Sequence[str] | bool,
    dest: str,
    *,
    context: SlideContext,
    encoder_args: tuple[str, int],
    storage_options: StorageOptions,
    progress: bool,
    start: int,
) -> list[str]:
    if not associated:
        return []
    if not isinstance(like, Slide):
        raise LayoutError("associated images are copied from like=, which must be a Slide")
    names = list(like.associated) if associated is True else list(associated)
    out = []
    for i, name in enumerate(names):
        level = like.associated.get(name)
        if level is None:
            raise LayoutError(f"the source slide has no {name!r} image: {sorted(like.associated)}")
        array = _level_array(level)
        rows, cols = array.shape[:2]
        samples = array.shape[2] if array.ndim == 3 else 1
        ts, quality = encoder_args
        encoder = Encoder(ts, samples, str(array.dtype), quality)
        tile = (rows, cols) if rows * cols <= 4096 * 4096 else level.tile_shape
        spacing = level.pixel_spacing or (0.01, 0.01)
        spec = LevelSpec(
            rows,
            cols,
            tile,
            samples,
            array.dtype.itemsize * 8,
            array.dtype.kind == "i",
            (float(spacing[0]), float(spacing[1])),
            image_type=name.upper(),
        )
        source = level.image.dataset
        text = (str(source.get("BarcodeValue", "") or ""), str(source.get("LabelText", "") or ""))
        result = write_level(
            array,
            _join(dest, f"{name}.dcm"),
            context=replace(context, label_text=text),
            spec=spec,
            encoder=encoder,
            instance_number=start + i,
            storage_options=storage_options,
            offset_table="auto",
            eot_threshold=EOT_THRESHOLD,
            chunk_edge=max(tile),
            progress=progress,
            label=name,
        )
        out.append(result.url)
    return out
