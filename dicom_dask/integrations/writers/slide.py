"""``to_dicom_slide``: a dask array, a `Level` or a `Slide` as a VL Whole Slide Microscopy pyramid.

Each level is one TILED_FULL instance. The whole pyramid is written in one pass (see
[`pyramid`][dicom_dask.integrations.writers.pyramid]): one dask task per band of two
tile rows reads the band (its frames decoded inside that task when the source is a
dicom_dask array), encodes level 0's tiles, downsamples the band into level 1's tile
row while it is in cache and encodes that, and hands on the next level's mean; each
tile row of the smaller levels is one small task. The tasks run on the active
scheduler (a `distributed.Client`'s workers when one is active) and send back only
encoded frames, which this process streams into every level's file in order (header
first, offset table fixed up at the end).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError
from dicom_dask.frames.sizes import format_size
from dicom_dask.frames.storage import resolve_fs
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide
from dicom_dask.integrations.writers.dataset import (
    LevelSpec,
    SlideContext,
    slide_context,
    slide_level_dataset,
)
from dicom_dask.integrations.writers.encode import Encoder, encode_block, transfer_syntax_uid
from dicom_dask.integrations.writers.options import (
    WriteOptions,
    active_client,
    as_completed,
    check_destination,
    remove_files,
)
from dicom_dask.integrations.writers.pyramid import Part, level_shapes, pyramid_tasks
from dicom_dask.integrations.writers.stream import (
    EOT_THRESHOLD,
    InstanceWriter,
    is_local,
)
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array

__all__ = ["to_dicom_slide"]

#: Target edge of an encoding task's block, in pixels (rounded to whole tiles), for
#: [`encoded_bands`][dicom_dask.integrations.writers.slide.encoded_bands].
CHUNK_EDGE = 2048
#: The files a pyramid written by ``to_dicom_slide`` has in its folder.
PYRAMID_FILES = r"(level-\d+|label|overview|thumbnail)\.dcm"
#: A pyramid band task holds at most about ``BLOCK_EDGE**2`` pixels of level 0: two
#: tile rows of up to 32,768 columns with 256-pixel tiles.
BLOCK_EDGE = 4096


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
) -> Iterator[list[bytes]]:
    """Encoded frames of ``array`` ``(y, x[, s])`` in TILED_FULL order, a band at a time.

    The array is rechunked to blocks of whole tiles; each block is encoded by one dask
    task. Bands of blocks are computed ``window`` at a time on the active scheduler,
    the next window while the current one is written. (The segmentation writer's
    path; pyramids go through
    [`pyramid_tasks`][dicom_dask.integrations.writers.pyramid.pyramid_tasks].)
    """
    from dicom_dask.integrations.writers.options import compute as active_compute

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
        workers = _workers()
        window = max(1, -(-2 * workers // nx_blocks))
    starts = list(range(0, ny_blocks, window))

    def compute(start: int) -> list[Any]:
        stop = min(start + window, ny_blocks)
        flat = [d for i in range(start, stop) for d in delayed[i]]
        results = active_compute(*flat)
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


def _workers() -> int:
    """Threads that compute: the cluster's, when a distributed client is active."""
    client = active_client()
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    import dask

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


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


@dataclass
class _Output:
    """One instance being written, and its tile rows waiting for their turn."""

    writer: InstanceWriter
    tile_columns: int
    next_row: int = 0
    waiting: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)

    def add(self, row: int, column: int, frames: np.ndarray) -> int:
        """Take encoded ``frames`` ``(tile rows, tile columns)`` placed at ``(row,
        column)``; write every tile row now complete and in turn; return how many
        frames were written."""
        for i in range(frames.shape[0]):
            self.waiting.setdefault(row + i, {})[column] = frames[i]
        written = 0
        while self._complete(self.next_row):
            parts = self.waiting.pop(self.next_row)
            batch = [bytes(f) for c in sorted(parts) for f in parts[c]]
            self.writer.write(batch)
            written += len(batch)
            self.next_row += 1
        return written

    def _complete(self, row: int) -> bool:
        parts = self.waiting.get(row)
        return parts is not None and sum(len(p) for p in parts.values()) == self.tile_columns


@dataclass(frozen=True)
class _Job:
    """Levels ``first .. first + levels - 1`` of the outputs, written from ``array``."""

    array: Any
    first: int
    levels: int
    encoder: Encoder
    tile: tuple[int, int]


def _open_output(
    path: str,
    *,
    context: SlideContext,
    spec: LevelSpec,
    encoder: Encoder,
    instance_number: int,
    options: WriteOptions,
    offset_table: str,
    eot_threshold: int,
) -> _Output:
    """The header of one instance, written (or spooled) now; its frames will follow."""
    ds = slide_level_dataset(
        context,
        spec,
        transfer_syntax=encoder.transfer_syntax,
        photometric_interpretation=encoder.photometric_interpretation,
        lossy_method=encoder.lossy_method,
        instance_number=instance_number,
    )
    writer = InstanceWriter(
        ds,
        path,
        number_of_frames=int(ds.NumberOfFrames),
        encapsulated=encoder.transfer_syntax != "1.2.840.10008.1.2.1",
        frame_bytes=spec.tile[0] * spec.tile[1] * spec.samples * spec.bits // 8,
        storage_options=options.storage_options,
        offset_table=offset_table,
        eot_threshold=eot_threshold,
    )
    return _Output(writer, -(-spec.columns // spec.tile[1]))


def _write_all(
    outputs: list[_Output], jobs: list[_Job], *, block_pixels: int, progress: bool
) -> list[str]:
    """Compute every job's tasks on the active scheduler and stream their frames."""
    tasks: dict[Part, Any] = {}
    for job in jobs:
        tasks.update(
            pyramid_tasks(
                job.array,
                levels=job.levels,
                tile=job.tile,
                encoder=job.encoder,
                block_pixels=block_pixels,
                first=job.first,
            )
        )
    total = sum(o.writer.n for o in outputs)
    rows, cols = jobs[0].array.shape[:2]
    label = f"{len(outputs)} instances, level 0 ({format_size(cols, rows)})"
    bar = _Progress(total, label, progress)
    try:
        for part, encoded in as_completed(tasks):
            for i, frames in enumerate(encoded):
                bar.add(outputs[part.level + i].add(part.row >> i, part.column >> i, frames))
        return [o.writer.close().url for o in outputs]
    except BaseException:
        for o in outputs:  # no partial pyramid left behind
            o.writer.abort()
        raise


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
    chunk_edge: int = BLOCK_EDGE,
    scratch: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    options: WriteOptions | Mapping[str, Any] | None = None,
) -> list[str]:
    """Write ``data`` as a VL Whole Slide Microscopy pyramid in the folder ``dest``.

    The whole pyramid is written in one pass over ``data``: one dask task per band of
    two tile rows decodes the band (when ``data`` comes from dicom_dask, the frames are
    read inside that task), encodes its tiles and those of the level below, and hands
    on the next level's 2 x 2 means; the smaller levels take one task per tile row.
    The tasks run on the active scheduler -- a `distributed.Client`'s workers when one
    is active, dask's threads otherwise -- and only encoded frames come back to this
    process, which streams them into the files in order (header first; a local file's
    offset table is fixed up at the end, a remote file is spooled, then uploaded).

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
        Number of levels, each the 2 x 2 mean of the one above (rounded half up). Default:
        a ``Slide``'s own levels; otherwise halve until a level fits in one tile.
    pixel_spacing : (float, float), optional
        Row and column spacing of level 0 in mm (default: from ``like``).
    associated : bool or sequence of str
        Copy ``"label"``/``"overview"``/``"thumbnail"`` images of ``like`` (``True``: all).
    storage_options : mapping or callable, optional
        fsspec options of ``dest`` (a mapping, or a callable returning the filesystem,
        as ``WriteOptions`` takes them); used only in this process, which writes the
        files: never sent to workers.
    offset_table : {"auto", "bot", "eot", "empty"}
        Basic Offset Table, or an Extended Offset Table when the pixel data may pass
        ``eot_threshold`` bytes (4 GiB).
    chunk_edge : int
        A band task holds at most about ``chunk_edge**2`` pixels of level 0 (two tile
        rows; wider bands are cut into blocks of whole tiles across).
    scratch : str, optional
        Deprecated and ignored (nothing is spilled any more): passing it warns.
    overwrite : bool
        Replace the files of a pyramid already in ``dest`` (also ``options.overwrite``).
        Without it, a ``level-N.dcm``, ``label.dcm``, ``overview.dcm`` or
        ``thumbnail.dcm`` in ``dest`` raises
        [`DestinationExistsError`][dicom_dask.errors.DestinationExistsError] before
        anything is read or written; with it, the files of the previous pyramid that
        this one does not replace (its deeper levels, say) are removed once the new one
        is written, so that the folder holds one pyramid.
    progress : bool, optional
        Print a progress bar over the frames written (default: ``options.progress``).
    options : WriteOptions or mapping, optional
        The options every writer shares; ``storage_options`` and ``progress`` given
        here take precedence.

    Returns
    -------
    list of str
        The written files, level 0 first, then the associated images.

    Raises
    ------
    DestinationExistsError
        When ``dest`` already holds a pyramid's files and ``overwrite`` is false.
    """
    if scratch is not None:
        warnings.warn(
            "to_dicom_slide(scratch=...) is deprecated and ignored: nothing is spilled any "
            "more; remove the argument",
            DeprecationWarning,
            stacklevel=2,
        )
    opts = WriteOptions.coerce(
        options,
        storage_options=storage_options,
        progress=progress,
        overwrite=overwrite or None,
    )
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
        levels = (
            len(source_levels)
            if source_levels is not None
            else _levels_to_one_tile(base.shape[:2], tile_shape)
        )
    jobs = _pyramid_jobs(base, source_levels, levels, encoder, tile_shape)
    shapes = [s for job in jobs for s in level_shapes(job.array.shape[:2], job.levels)]
    assoc = _associated_jobs(like, associated, (ts, quality), first=levels)
    dest_text = os.fspath(dest)
    names = [f"level-{k}.dcm" for k in range(len(shapes))] + [f"{a[1]}.dcm" for a in assoc]
    leftover = check_destination(
        [_join(dest_text, n) for n in names],
        storage_options=opts.storage_options,
        overwrite=opts.overwrite,
        family=PYRAMID_FILES,
    )
    _make_folder(dest_text, opts.storage_options)
    spacing0 = _spacing(base.shape[:2], refs, pixel_spacing)
    use_refs = source_levels is not None and pixel_spacing is None
    outputs: list[_Output] = []
    try:
        for k, (rows, cols) in enumerate(shapes):
            spacing = (
                _spacing((rows, cols), refs, None)
                if use_refs
                else (spacing0[0] * base.shape[0] / rows, spacing0[1] * base.shape[1] / cols)
            )
            spec = LevelSpec(
                rows,
                cols,
                tile_shape,
                samples,
                base.dtype.itemsize * 8,
                base.dtype.kind == "i",
                spacing,
                resampled=k > 0,
            )
            outputs.append(
                _open_output(
                    _join(dest_text, f"level-{k}.dcm"),
                    context=context,
                    spec=spec,
                    encoder=encoder,
                    instance_number=k + 1,
                    options=opts,
                    offset_table=offset_table,
                    eot_threshold=eot_threshold,
                )
            )
        for i, (job, name, spec, label_text) in enumerate(assoc):
            outputs.append(
                _open_output(
                    _join(dest_text, f"{name}.dcm"),
                    context=replace(context, label_text=label_text),
                    spec=spec,
                    encoder=job.encoder,
                    instance_number=levels + 1 + i,
                    options=opts,
                    offset_table="auto",
                    eot_threshold=EOT_THRESHOLD,
                )
            )
    except BaseException:
        for o in outputs:
            o.writer.abort()
        raise
    all_jobs = jobs + [a[0] for a in assoc]
    files = _write_all(outputs, all_jobs, block_pixels=chunk_edge**2, progress=opts.progress)
    remove_files(leftover, opts.storage_options)
    return files


def _levels_to_one_tile(shape: tuple[int, ...], tile: tuple[int, int]) -> int:
    """Levels from ``shape`` halving until one tile holds the level."""
    levels, size = 1, max(shape[:2])
    while size > max(tile):
        size //= 2
        levels += 1
    return levels


def _pyramid_jobs(
    base: Any,
    source_levels: list[Any] | None,
    levels: int,
    encoder: Encoder,
    tile: tuple[int, int],
) -> list[_Job]:
    """A slide's own levels, each written from itself, the last one also giving the
    levels below it; or ``levels`` levels from ``base``."""
    if not source_levels:
        return [_Job(base, 0, levels, encoder, tile)]
    own = min(levels, len(source_levels))
    jobs = [_Job(source_levels[k], k, 1, encoder, tile) for k in range(own - 1)]
    jobs.append(_Job(source_levels[own - 1], own - 1, levels - own + 1, encoder, tile))
    return jobs


def _make_folder(dest: str, storage_options: StorageOptions) -> None:
    if is_local(dest):
        os.makedirs(dest.removeprefix("file://"), exist_ok=True)
    else:
        fs, root = resolve_fs(dest, storage_options)
        fs.makedirs(root, exist_ok=True)


def _associated_jobs(
    like: Any,
    associated: Sequence[str] | bool,
    encoder_args: tuple[str, int],
    *,
    first: int,
) -> list[tuple[_Job, str, LevelSpec, tuple[str, str]]]:
    """``(job, name, spec, (barcode, label text))`` of each associated image to copy."""
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
        out.append((_Job(array, first + i, 1, encoder, tile), name, spec, text))
    return out
