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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError
from dicom_dask.frames.sizes import format_size
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide
from dicom_dask.integrations.writers.common import FrameProgress, join_path, make_folder
from dicom_dask.integrations.writers.dataset import (
    LevelSpec,
    SlideContext,
    slide_context,
    slide_level_dataset,
)
from dicom_dask.integrations.writers.encode import Encoder, transfer_syntax_uid
from dicom_dask.integrations.writers.options import (
    WriteOptions,
    as_completed,
    check_destination,
    remove_files,
)
from dicom_dask.integrations.writers.pyramid import Part, level_shapes, pyramid_tasks
from dicom_dask.integrations.writers.stream import EOT_THRESHOLD, InstanceWriter
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array

__all__ = ["to_dicom_slide"]

#: The files a pyramid written by ``to_dicom_slide`` has in its folder.
PYRAMID_FILES = r"(level-\d+|label|overview|thumbnail)\.dcm"
#: A pyramid band task holds at most about ``BLOCK_EDGE**2`` pixels of level 0: two
#: tile rows of up to 32,768 columns with 256-pixel tiles.
BLOCK_EDGE = 4096


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
        offset_table=options.offset_table,
        eot_threshold=options.eot_threshold,
    )
    return _Output(writer, -(-spec.columns // spec.tile[1]))


def _write_all(outputs: list[_Output], jobs: list[_Job], options: WriteOptions) -> list[str]:
    """Compute every job's tasks on the active scheduler and stream their frames."""
    edge = int(options.chunk_edge or BLOCK_EDGE)
    tasks: dict[Part, Any] = {}
    for job in jobs:
        tasks.update(
            pyramid_tasks(
                job.array,
                levels=job.levels,
                tile=job.tile,
                encoder=job.encoder,
                block_pixels=edge**2,
                first=job.first,
            )
        )
    total = sum(o.writer.n for o in outputs)
    rows, cols = jobs[0].array.shape[:2]
    label = f"{len(outputs)} instances, level 0 ({format_size(cols, rows)})"
    bar = FrameProgress(total, label, options.progress)
    try:
        for part, encoded in as_completed(tasks):
            for i, frames in enumerate(encoded):
                bar.add(outputs[part.level + i].add(part.row >> i, part.column >> i, frames))
        return [o.writer.close().url for o in outputs]
    except BaseException:
        for o in outputs:  # no partial pyramid left behind
            o.writer.abort()
        raise


@dataclass(frozen=True)
class _Plan:
    """What ``to_dicom_slide`` writes: the pyramid's jobs and level headers, the
    associated images, and the header attributes they share."""

    jobs: list[_Job]
    specs: list[LevelSpec]
    associated: list[tuple[_Job, str, LevelSpec, tuple[str, str]]]
    context: SlideContext
    encoder: Encoder

    def names(self) -> list[str]:
        """The file names, level 0 first, then the associated images."""
        levels = [f"level-{k}.dcm" for k in range(len(self.specs))]
        return levels + [f"{a[1]}.dcm" for a in self.associated]


def _source(data: Any, like: Any) -> tuple[Any, list[Any] | None, Any]:
    """``(level 0 as a dask array, a Slide's own levels or None, like)``."""
    if isinstance(data, Slide):
        source_levels = [_level_array(lv) for lv in data.pyramid]
        return source_levels[0], source_levels, data if like is None else like
    if isinstance(data, Level):
        return _level_array(data), None, data if like is None else like
    return _as_dask(data), None, like


def _level_specs(
    base: Any,
    shapes: Sequence[tuple[int, int]],
    tile: tuple[int, int],
    spacings: Sequence[tuple[float, float]],
) -> list[LevelSpec]:
    """The header geometry of every level of the pyramid."""
    samples = base.shape[2] if base.ndim == 3 else 1
    return [
        LevelSpec(
            rows,
            cols,
            tile,
            samples,
            base.dtype.itemsize * 8,
            base.dtype.kind == "i",
            spacing,
            resampled=k > 0,
        )
        for k, ((rows, cols), spacing) in enumerate(zip(shapes, spacings, strict=True))
    ]


def _plan(
    data: Any,
    like: Any,
    *,
    tile: int | tuple[int, int],
    levels: int | None,
    pixel_spacing: tuple[float, float] | None,
    associated: Sequence[str] | bool,
    series_description: str | None,
    options: WriteOptions,
) -> _Plan:
    """Check ``data`` and ``like`` and lay out the pyramid (nothing is read or written)."""
    base, source_levels, like = _source(data, like)
    tile_shape = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    ts = transfer_syntax_uid(str(options.transfer_syntax))
    quality = int(options.quality if options.quality is not None else 90)
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
    spacing0 = _spacing(base.shape[:2], refs, pixel_spacing)
    if source_levels is not None and pixel_spacing is None:
        spacings = [_spacing(shape, refs, None) for shape in shapes]
    else:
        rows0, cols0 = base.shape[:2]
        spacings = [(spacing0[0] * rows0 / r, spacing0[1] * cols0 / c) for r, c in shapes]
    assoc = _associated_jobs(like, associated, (ts, quality), first=levels)
    specs = _level_specs(base, shapes, tile_shape, spacings)
    return _Plan(jobs, specs, assoc, context, encoder)


def _open_outputs(plan: _Plan, dest: str, options: WriteOptions) -> list[_Output]:
    """Every instance of ``plan`` opened, its header written; none left open on failure."""
    outputs: list[_Output] = []
    levels = len(plan.specs)
    # associated images: their own offset table rule, whatever the pyramid's
    small = replace(options, offset_table="auto", eot_threshold=EOT_THRESHOLD)
    try:
        for k, spec in enumerate(plan.specs):
            path = join_path(dest, f"level-{k}.dcm")
            outputs.append(
                _open_output(
                    path,
                    context=plan.context,
                    spec=spec,
                    encoder=plan.encoder,
                    instance_number=k + 1,
                    options=options,
                )
            )
        for i, (job, name, spec, label_text) in enumerate(plan.associated):
            outputs.append(
                _open_output(
                    join_path(dest, f"{name}.dcm"),
                    context=replace(plan.context, label_text=label_text),
                    spec=spec,
                    encoder=job.encoder,
                    instance_number=levels + 1 + i,
                    options=small,
                )
            )
    except BaseException:
        for o in outputs:
            o.writer.abort()
        raise
    return outputs


def to_dicom_slide(
    data: Any,
    dest: str | os.PathLike[str],
    *,
    like: Slide | Level | Dataset | None = None,
    tile: int | tuple[int, int] = 256,
    transfer_syntax: str | None = None,
    quality: int | None = None,
    levels: int | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    associated: Sequence[str] | bool = False,
    series_description: str | None = None,
    storage_options: StorageOptions = None,
    offset_table: str | None = None,
    eot_threshold: int | None = None,
    chunk_edge: int | None = None,
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
    transfer_syntax : str, optional
        ``"jpeg"`` (baseline, the default), ``"jpeg2000"``, ``"jpeg2000-lossless"``, ``"htj2k"``,
        ``"htj2k-lossless"``, ``"jpegls"`` (lossless), ``"rle"``, ``"explicit"`` (native
        Explicit VR Little Endian), or a transfer syntax UID.
    quality : int, optional
        JPEG quality, or JPEG 2000 PSNR (dB), for the lossy syntaxes (default 90).
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
    offset_table : {"auto", "bot", "eot", "empty"}, optional
        Basic Offset Table, or an Extended Offset Table when the pixel data may pass
        ``eot_threshold`` bytes (default ``"auto"`` and 4 GiB).
    eot_threshold : int, optional
        See ``offset_table``.
    chunk_edge : int, optional
        A band task holds at most about ``chunk_edge**2`` pixels of level 0 (two tile
        rows; wider bands are cut into blocks of whole tiles across). Default 4096.
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
        The options every writer shares
        ([`WriteOptions`][dicom_dask.integrations.writers.options.WriteOptions]); the
        keywords of the same names given here take precedence.

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
        defaults={"transfer_syntax": "jpeg", "quality": 90, "chunk_edge": BLOCK_EDGE},
        storage_options=storage_options,
        overwrite=overwrite or None,
        progress=progress,
        transfer_syntax=transfer_syntax,
        quality=quality,
        offset_table=offset_table,
        eot_threshold=eot_threshold,
        chunk_edge=chunk_edge,
    )
    plan = _plan(
        data,
        like,
        tile=tile,
        levels=levels,
        pixel_spacing=pixel_spacing,
        associated=associated,
        series_description=series_description,
        options=opts,
    )
    dest_text = os.fspath(dest)
    leftover = check_destination(
        [join_path(dest_text, n) for n in plan.names()],
        storage_options=opts.storage_options,
        overwrite=opts.overwrite,
        family=PYRAMID_FILES,
    )
    make_folder(dest_text, opts.storage_options)
    outputs = _open_outputs(plan, dest_text, opts)
    files = _write_all(outputs, plan.jobs + [a[0] for a in plan.associated], opts)
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
