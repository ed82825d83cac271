"""``to_dicom_seg``: a label or probability dask array as a DICOM Segmentation.

highdicom builds the metadata: segment descriptions, code sequences, the references to
the source, the dimension index and the functional groups. It would also need the
whole pixel array in memory, so it is given a one-tile (slide) or one-slice (volume)
template instead (see [`seg_header`][dicom_dask.integrations.writers.seg_header]); the
header is then widened to the full geometry, and the frames are encoded tile by tile
inside dask tasks and streamed like a slide level (see
[`seg_frames`][dicom_dask.integrations.writers.seg_frames] for the frames' order and
packing, and [`write_instance`][dicom_dask.integrations.writers.stream.write_instance]).

Over a slide, the labels are on a level's pixel grid or at their own resolution
(placed by [`place_on_slide`][dicom_dask.integrations.writers.placement.place_on_slide]);
over a volume, see [`seg_volume`][dicom_dask.integrations.writers.seg_volume].
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.writers.common import CHUNK_EDGE, FrameProgress
from dicom_dask.integrations.writers.dataset import decimal_string, slide_context
from dicom_dask.integrations.writers.encode import transfer_syntax_uid
from dicom_dask.integrations.writers.headers import completed_source
from dicom_dask.integrations.writers.options import WriteOptions, check_destination
from dicom_dask.integrations.writers.placement import (
    SlidePlacement,
    place_on_slide,
    slide_geometry,
    unwrap,
)
from dicom_dask.integrations.writers.seg_frames import (
    SEG_SYNTAXES,
    SEG_TYPES,
    segment_count,
    segment_passes,
    segments_axis,
    write_segmentation,
)
from dicom_dask.integrations.writers.seg_header import SegContent, seg_template, template_pixels
from dicom_dask.integrations.writers.seg_volume import volume_seg
from dicom_dask.types import StorageOptions

__all__ = ["to_dicom_seg"]


def to_dicom_seg(
    labels: Any,
    dest: str | os.PathLike[str],
    *,
    like: Slide | Level | Volume,
    pixel_spacing: float | tuple[float, float] | None = None,
    origin: tuple[float, ...] | None = None,
    segmentation_type: str = "BINARY",
    segment_labels: Sequence[str] | None = None,
    segment_descriptions: Sequence[Any] | None = None,
    algorithm: str = "dicom_dask",
    max_fractional_value: int = 255,
    tile: int | tuple[int, int] | None = None,
    transfer_syntax: str | None = None,
    series_description: str | None = None,
    storage_options: StorageOptions = None,
    offset_table: str | None = None,
    eot_threshold: int | None = None,
    chunk_edge: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    options: WriteOptions | Mapping[str, Any] | None = None,
) -> str:
    """Write ``labels`` over a slide level or a volume as a DICOM Segmentation file ``dest``.

    Parameters
    ----------
    labels : dask or numpy array
        ``BINARY`` and ``LABELMAP``: integer labels, 0 = background, segment ``i`` =
        value ``i``; ``(y, x)`` over a slide level, ``(slices, rows, columns)`` over a
        volume. ``FRACTIONAL``: probabilities in [0, 1], ``(segments, ...)`` or one
        segment without the leading axis.
    dest : str or path
        The file to write, local or an fsspec URL.
    like : Slide, Level or Volume
        The source the segmentation references: a slide level with the labels' shape
        (a ``Slide``: the level whose matrix has that shape; a ``transformed()`` level
        too), or a volume opened with ``open_volume`` -- single-frame images or an
        enhanced CT, MR or PET image -- as it is, sliced along its slices,
        ``transformed()`` or computed (the same geometry as its images; with channel
        dimensions, the first channel's images are referenced). Missing slices have no
        frame; a source without a Frame of Reference gets a new one.
    pixel_spacing : float or (float, float), optional
        Row and column spacing in mm of labels at their own resolution: over a slide
        (coarser than level 0, a patch-score map...), placed from level 0's origin; over
        a volume, one frame per slice with its own in-plane grid (its top-left corner on
        the volume's), placed by the source's positions and orientation.
    origin : (x, y[, z]), optional
        Slide mm of the centre of the labels' pixel ``(0, 0)`` (default: their top-left
        corner on level 0's).
    segmentation_type : {"BINARY", "FRACTIONAL", "LABELMAP"}
    segment_labels : sequence of str, optional
        One label per segment (default ``"segment 1"``...).
    segment_descriptions : sequence of highdicom.seg.SegmentDescription, optional
        Full descriptions (property category/type codes...), instead of labels.
    tile : int or (int, int), optional
        Tile of a slide SEG (default: the source level's tile).
    transfer_syntax : str, optional
        ``"explicit"`` (the default); ``FRACTIONAL`` and ``LABELMAP`` also ``"rle"``,
        ``"jpegls"``, ``"jpeg2000-lossless"`` (lossless; ``BINARY`` frames are
        bit-packed, native only).
    series_description : str, optional
        Series Description of the new series.
    storage_options : mapping or callable, optional
        fsspec options of ``dest``.
    offset_table : {"auto", "bot", "eot", "empty"}, optional
        The offset table of an encapsulated SEG (default ``"auto"``: Basic, or Extended
        past ``eot_threshold`` bytes, 4 GiB).
    eot_threshold : int, optional
        See ``offset_table``.
    chunk_edge : int, optional
        About the edge of the block one encoding task holds (default 2048).
    overwrite : bool
        Replace ``dest`` if it exists (also ``options.overwrite``); otherwise an
        existing ``dest`` raises
        [`DestinationExistsError`][dicom_dask.errors.DestinationExistsError] before
        anything is computed.
    progress : bool, optional
        Print a progress bar over the frames written (default: ``options.progress``,
        true).
    options : WriteOptions or mapping, optional
        The options every writer shares
        ([`WriteOptions`][dicom_dask.integrations.writers.options.WriteOptions]); the
        keywords of the same names given here take precedence.

    Returns
    -------
    str
        The written file.
    """
    if isinstance(labels, Volume):  # e.g. ``ct.transformed().array > 300`` kept as a Volume
        labels = labels.array
    opts = WriteOptions.coerce(
        options,
        defaults={"transfer_syntax": "explicit", "chunk_edge": CHUNK_EDGE},
        storage_options=storage_options,
        overwrite=overwrite or None,
        progress=progress,
        transfer_syntax=transfer_syntax,
        offset_table=offset_table,
        eot_threshold=eot_threshold,
        chunk_edge=chunk_edge,
    )
    content = SegContent(
        kind=_kind(segmentation_type),
        transfer_syntax=transfer_syntax_uid(str(opts.transfer_syntax)),
        segment_labels=segment_labels,
        segment_descriptions=segment_descriptions,
        algorithm=algorithm,
        max_fractional_value=max_fractional_value,
        series_description=series_description,
    )
    labels, affine = unwrap(labels, like)
    _check(content, str(opts.transfer_syntax), like, origin)
    check_destination(
        [os.fspath(dest)], storage_options=opts.storage_options, overwrite=opts.overwrite
    )
    if isinstance(like, Volume):
        return volume_seg(
            labels, dest, like, content, pixel_spacing=pixel_spacing, affine=affine, options=opts
        )
    array, count = segments_axis(labels, 2, content.kind)
    shape = tuple(array.shape[-2:])
    placement = place_on_slide(
        like, shape, pixel_spacing=pixel_spacing, origin=origin, affine=affine
    )
    tile_shape = (
        _clipped(placement.level.tile_shape, shape, content.kind, placement.resampled)
        if tile is None
        else ((tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1])))
    )
    count, label_dtype = segment_count(array, count, content)
    ds = _slide_header(placement, content, tile_shape, count, label_dtype)
    batches = segment_passes(
        array,
        content,
        count,
        tile=tile_shape,
        label_dtype=label_dtype,
        chunk_edge=int(opts.chunk_edge or CHUNK_EDGE),
        progress=FrameProgress(int(ds.NumberOfFrames), "segmentation", opts.progress),
    )
    return write_segmentation(ds, batches, dest, frame_shape=tile_shape, options=opts)


def _kind(segmentation_type: Any) -> str:
    """The segmentation type, upper case (a highdicom enum's value too)."""
    kind = str(getattr(segmentation_type, "value", segmentation_type)).upper()
    if kind not in SEG_TYPES:
        raise ValueError(f"segmentation_type must be one of {SEG_TYPES}, not {segmentation_type!r}")
    return kind


def _check(content: SegContent, transfer_syntax: str, like: Any, origin: Any) -> None:
    """Refuse a transfer syntax the type cannot have, and ``origin=`` over a volume."""
    kind, ts = content.kind, content.transfer_syntax
    if kind == "BINARY" and ts != "1.2.840.10008.1.2.1":
        raise LayoutError(f"{kind} segmentations are written in Explicit VR Little Endian only")
    if kind != "BINARY" and ts not in SEG_SYNTAXES:
        raise LayoutError(
            f"{kind} segmentations are written losslessly: explicit, rle, jpegls or "
            f"jpeg2000-lossless, not {transfer_syntax!r}"
        )
    if isinstance(like, Volume) and origin is not None:
        raise LayoutError(
            "origin= places results over a slide; over a volume, labels at their own "
            "pixel_spacing= have their top-left corner on the volume's (a DataArray with "
            "an affine attribute places them elsewhere)"
        )


def _slide_source(placement: SlidePlacement, tile: tuple[int, int], where: str) -> Dataset:
    """The level's header as highdicom's one-tile source, its specimen module complete."""
    level = placement.level
    source = completed_source(level.image.dataset, where=where)
    # the specimen module is copied into the SEG: complete what the source left out
    filled = slide_context(source, samples=level.samples).common
    for keyword in (
        "IssuerOfTheContainerIdentifierSequence",
        "ContainerTypeCodeSequence",
        "SpecimenDescriptionSequence",
    ):
        if keyword not in source:
            source[keyword] = filled[keyword]
    # a one-tile source: highdicom builds the header from it without the whole array
    source.TotalPixelMatrixRows, source.TotalPixelMatrixColumns = tile
    return source


def _slide_header(
    placement: SlidePlacement,
    content: SegContent,
    tile: tuple[int, int],
    count: int,
    label_dtype: Any,
) -> Dataset:
    """The SEG's header over a slide: highdicom's one-tile template, widened."""
    level = placement.level
    descriptions = content.descriptions(count)
    where = level.urls[0] if level.urls else "the slide"
    ds = seg_template(
        [_slide_source(placement, tile, where)],
        template_pixels(content.kind, tile, count, label_dtype),
        content,
        descriptions,
        tiled=tile,
        where_text=where,
        geometry=slide_geometry(placement) if placement.resampled else None,
    )
    rows, cols = placement.shape
    real = level.image.dataset
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, cols
    for keyword in ("ImagedVolumeWidth", "ImagedVolumeHeight"):
        if keyword in real:
            ds[keyword] = copy.deepcopy(real[keyword])
    if placement.resampled:
        ds.ImagedVolumeWidth = decimal_string(cols * placement.pixel_spacing[1])
        ds.ImagedVolumeHeight = decimal_string(rows * placement.pixel_spacing[0])
    tiles = -(-rows // tile[0]) * -(-cols // tile[1])
    per_pass = 1 if content.kind == "LABELMAP" else count
    ds.NumberOfFrames = tiles * per_pass
    return ds


def _clipped(
    tile: tuple[int, int], shape: tuple[int, ...], kind: str, resampled: bool
) -> tuple[int, int]:
    """The source's tile; at most a resampled result's matrix (a small map is one frame)."""
    clipped = min(int(tile[0]), int(shape[0])), min(int(tile[1]), int(shape[1]))
    if not resampled or (kind == "BINARY" and (clipped[0] * clipped[1]) % 8):
        return tile
    return clipped
