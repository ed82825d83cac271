"""``to_dicom_seg``: a label or probability dask array as a DICOM Segmentation.

highdicom builds the metadata: segment descriptions, code sequences, the references to
the source, the dimension index and the functional groups. It would also need the
whole pixel array in memory, so it is given a one-tile (slide) or one-slice (volume)
template instead; the header is then widened to the full geometry, and the frames are
encoded tile by tile inside dask tasks and streamed like a slide level (see
[`write_instance`][dicom_dask.integrations.writers.stream.write_instance]).

Frame order: segments outermost, then TILED_FULL tile order (slides) or slice order
(volumes). ``BINARY`` frames are bit-packed continuously across frames (whatever their
pixel count, see [`bits`][dicom_dask.integrations.writers.bits]), ``FRACTIONAL`` frames
are 8-bit ``round(p * max_fractional_value)``, ``LABELMAP`` frames hold the labels (8
or 16 bits).

Over a volume, ``like=`` is the volume from ``open_volume``, sliced along its slices,
``transformed()`` or computed: the images behind its slices are found from its record
(see [`headers`][dicom_dask.integrations.writers.headers], which also decodes the
headers' text, whatever their Specific Character Set, and gives a source without a
Frame of Reference a new one). A missing slice (``geometry="positions"``) has no image
to reference: the frames of the slices that exist are written, at their positions.
Labels at their own in-plane resolution (``pixel_spacing=``) are placed by
[`place_on_volume`][dicom_dask.integrations.writers.placement.place_on_volume].
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicom_dask.errors import DicomDaskError, EncodeError, InvalidHeaderError, LayoutError
from dicom_dask.frames.storage import redact
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.writers.bits import BinaryFrame, write_bitstream
from dicom_dask.integrations.writers.dataset import (
    _ds,
    new_uid,
    slide_context,
    software_version,
)
from dicom_dask.integrations.writers.encode import Encoder, transfer_syntax_uid
from dicom_dask.integrations.writers.headers import SliceSources, decoded_copy, slice_sources
from dicom_dask.integrations.writers.options import check_destination
from dicom_dask.integrations.writers.placement import (
    VolumePlacement,
    place_on_slide,
    place_on_volume,
    slide_geometry,
    unwrap,
)
from dicom_dask.integrations.writers.slide import CHUNK_EDGE, _Progress, encoded_bands
from dicom_dask.integrations.writers.stream import EOT_THRESHOLD, write_instance
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array

__all__ = ["to_dicom_seg"]

_SEG_TYPES = ("BINARY", "FRACTIONAL", "LABELMAP")
#: Lossless syntaxes of FRACTIONAL and LABELMAP frames (highdicom's list for the IOD).
_SEG_SYNTAXES = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
)


@dataclass(frozen=True)
class _FractionalFrame:
    """``round(p * max_value)`` as 8-bit (NaN: 0), compressed by ``encoder`` if given."""

    max_value: int
    encoder: Encoder | None = None

    def __call__(self, tile: np.ndarray) -> bytes:
        p = np.nan_to_num(np.asarray(tile, dtype=np.float64), nan=0.0)
        scaled = np.rint(np.clip(p, 0.0, 1.0) * self.max_value).astype(np.uint8)
        return scaled.tobytes() if self.encoder is None else self.encoder(scaled)


def _descriptions(number: int, segment_labels: Sequence[str] | None, algorithm: str) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    labels = list(segment_labels or [f"segment {i}" for i in range(1, number + 1)])
    if len(labels) != number:
        raise LayoutError(f"{number} segments but {len(labels)} segment_labels")
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=software_version(), family=codes.cid7162.ArtificialIntelligence
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=label,
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=codes.cid7166.ConnectiveTissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
        )
        for i, label in enumerate(labels)
    ]


_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _completed(ds: Dataset, *, where: str, decoded: bool = False) -> Dataset:
    """A copy of a source header fit for highdicom: its text decoded and declared UTF-8
    (an empty or multi-valued Specific Character Set is common), the empty type 2
    attributes highdicom reads, and a new Frame of Reference when it has none."""
    out = copy.deepcopy(ds) if decoded else decoded_copy(ds, where=where)
    for keyword in _TYPE2:
        if keyword not in out:
            setattr(out, keyword, "")
    if not out.get("FrameOfReferenceUID"):
        out.FrameOfReferenceUID = new_uid()
        out.PositionReferenceIndicator = ""
    return out


def _template(
    source_images: list[Dataset],
    pixels: np.ndarray,
    *,
    segmentation_type: str,
    descriptions: Sequence[Any],
    max_fractional_value: int,
    series_description: str | None,
    transfer_syntax: str,
    tiled: tuple[int, int] | None,
    further: Sequence[Dataset] = (),
    pixel_measures: Any = None,
    where_text: str = "",
    geometry: dict[str, Any] | None = None,
) -> Dataset:
    import highdicom as hd

    # a volume's labels at their own in-plane grid: its orientation and first position
    kwargs: dict[str, Any] = {"pixel_measures": pixel_measures, **(geometry or {})}
    if tiled is not None:
        kwargs = {
            "tile_pixel_array": True,
            "tile_size": tiled,
            "dimension_organization_type": "TILED_FULL",
            **(geometry or {}),  # a result at its own resolution: its spacing and origin
        }
    where = str(source_images[0].get("SOPInstanceUID", "the source"))
    try:
        seg = _build(
            hd,
            source_images,
            pixels,
            segmentation_type,
            descriptions,
            max_fractional_value=max_fractional_value,
            further=further,
            **kwargs,
        )
    except DicomDaskError:
        raise
    except Exception as exc:  # highdicom checks the source: its errors name no file
        raise InvalidHeaderError(
            f"{where_text or where}: highdicom cannot build a Segmentation over this "
            f"image: {type(exc).__name__}: {exc}"
        ) from exc
    seg.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    if series_description:
        seg.SeriesDescription = series_description
    for keyword in ("PixelData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in seg:
            del seg[keyword]
    return seg


def _build(
    hd: Any,
    source_images: list[Dataset],
    pixels: np.ndarray,
    segmentation_type: str,
    descriptions: Sequence[Any],
    *,
    max_fractional_value: int,
    further: Sequence[Dataset],
    **kwargs: Any,
) -> Any:
    return hd.seg.Segmentation(
        source_images=list(source_images),
        pixel_array=pixels,
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=new_uid(),
        series_number=901,
        sop_instance_uid=new_uid(),
        instance_number=1,
        manufacturer="dicom_dask",
        manufacturer_model_name="dicom_dask",
        software_versions=software_version(),
        device_serial_number="0",
        max_fractional_value=max_fractional_value,
        # the template's frame is encoded natively (highdicom's JPEG 2000 refuses frames
        # under 32 pixels: a small map is one small tile); the frames' syntax is set below
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        omit_empty_frames=False,
        further_source_images=list(further) or None,
        **kwargs,
    )


def _segments_axis(labels: Any, spatial: int, kind: str) -> tuple[dask.array.Array, int]:
    """``(segments, *spatial)`` probabilities, or ``spatial`` labels; and the segment count."""
    import dask.array as da

    arr = labels if isinstance(labels, da.Array) else da.asarray(labels)
    if kind == "FRACTIONAL":
        if arr.ndim == spatial:
            arr = arr[np.newaxis]
        if arr.ndim != spatial + 1:
            raise LayoutError(f"FRACTIONAL expects (segments, ...) probabilities, got {arr.shape}")
        return arr, int(arr.shape[0])
    if arr.ndim != spatial:
        raise LayoutError(f"expected a {spatial}-d label array, got shape {arr.shape}")
    if arr.dtype.kind not in "uib":
        raise LayoutError(f"{kind} labels must be integers, not {arr.dtype}")
    return arr, -1


def _frame_encoder(
    kind: str, segment: int, transfer_syntax: str, max_value: int, dtype: Any
) -> Any:
    if kind == "BINARY":
        return BinaryFrame(segment)
    if kind == "FRACTIONAL":
        native = transfer_syntax == "1.2.840.10008.1.2.1"
        return _FractionalFrame(max_value, None if native else Encoder(transfer_syntax, 1))
    return Encoder(transfer_syntax, 1, str(np.dtype(dtype)))


def _passes(
    array: dask.array.Array,
    kind: str,
    count: int,
    *,
    tile: tuple[int, int],
    transfer_syntax: str,
    max_value: int,
    label_dtype: Any,
    chunk_edge: int,
    progress: _Progress,
) -> Iterator[list[bytes]]:
    """Frames of every segment in turn (one pass over the labels per segment)."""
    if kind == "LABELMAP":
        encoder = _frame_encoder(kind, 0, transfer_syntax, max_value, label_dtype)
        yield from encoded_bands(
            array.astype(label_dtype),
            tile=tile,
            encoder=encoder,
            chunk_edge=chunk_edge,
            progress=progress,
        )
        return
    for s in range(count):
        plane = array[s] if kind == "FRACTIONAL" else array
        encoder = _frame_encoder(kind, s + 1, transfer_syntax, max_value, label_dtype)
        yield from encoded_bands(
            plane, tile=tile, encoder=encoder, chunk_edge=chunk_edge, progress=progress
        )


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
    transfer_syntax: str = "explicit",
    series_description: str | None = None,
    storage_options: StorageOptions = None,
    offset_table: str = "auto",
    eot_threshold: int = EOT_THRESHOLD,
    chunk_edge: int = CHUNK_EDGE,
    overwrite: bool = False,
    progress: bool = True,
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
    transfer_syntax : str
        ``"explicit"``; ``FRACTIONAL`` and ``LABELMAP`` also ``"rle"``, ``"jpegls"``,
        ``"jpeg2000-lossless"`` (lossless; ``BINARY`` frames are bit-packed, native only).
    overwrite : bool
        Replace ``dest`` if it exists; otherwise an existing ``dest`` raises
        [`DestinationExistsError`][dicom_dask.errors.DestinationExistsError] before
        anything is computed.

    Returns
    -------
    str
        The written file.
    """
    if isinstance(labels, Volume):  # e.g. ``ct.transformed().array > 300`` kept as a Volume
        labels = labels.array
    kind = str(getattr(segmentation_type, "value", segmentation_type)).upper()
    if kind not in _SEG_TYPES:
        raise ValueError(
            f"segmentation_type must be one of {_SEG_TYPES}, not {segmentation_type!r}"
        )
    ts = transfer_syntax_uid(transfer_syntax)
    labels, affine = unwrap(labels, like)
    if kind == "BINARY" and ts != "1.2.840.10008.1.2.1":
        raise LayoutError(f"{kind} segmentations are written in Explicit VR Little Endian only")
    if kind != "BINARY" and ts not in _SEG_SYNTAXES:
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
    check_destination([os.fspath(dest)], storage_options=storage_options, overwrite=overwrite)
    if isinstance(like, Volume):
        return _volume_seg(
            labels,
            dest,
            like,
            pixel_spacing=pixel_spacing,
            affine=affine,
            kind=kind,
            ts=ts,
            segment_labels=segment_labels,
            segment_descriptions=segment_descriptions,
            algorithm=algorithm,
            max_value=max_fractional_value,
            series_description=series_description,
            storage_options=storage_options,
            offset_table=offset_table,
            eot_threshold=eot_threshold,
            chunk_edge=chunk_edge,
            progress=progress,
        )
    array, count = _segments_axis(labels, 2, kind)
    shape = tuple(array.shape[-2:])
    placement = place_on_slide(
        like, shape, pixel_spacing=pixel_spacing, origin=origin, affine=affine
    )
    level = placement.level
    tile_shape = (
        _clipped(level.tile_shape, shape, kind, placement.resampled)
        if tile is None
        else ((tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1])))
    )
    count, label_dtype = _count(array, kind, count, segment_labels, segment_descriptions)
    descriptions = list(segment_descriptions or _descriptions(count, segment_labels, algorithm))
    where = level.urls[0] if level.urls else "the slide"
    source = _completed(level.image.dataset, where=where)
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
    source.TotalPixelMatrixRows, source.TotalPixelMatrixColumns = tile_shape
    template_pixels = (
        np.zeros((1, *tile_shape, count), np.float32)
        if kind == "FRACTIONAL"
        else np.zeros((1, *tile_shape), label_dtype if kind == "LABELMAP" else np.uint8)
    )
    if kind == "FRACTIONAL" and count == 1:
        template_pixels = template_pixels[..., 0]
    ds = _template(
        [source],
        template_pixels,
        segmentation_type=kind,
        descriptions=descriptions,
        max_fractional_value=max_fractional_value,
        series_description=series_description,
        transfer_syntax=ts,
        tiled=tile_shape,
        where_text=where,
        geometry=slide_geometry(placement) if placement.resampled else None,
    )
    rows, cols = shape
    real = level.image.dataset
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, cols
    for keyword in ("ImagedVolumeWidth", "ImagedVolumeHeight"):
        if keyword in real:
            ds[keyword] = copy.deepcopy(real[keyword])
    if placement.resampled:
        ds.ImagedVolumeWidth = _ds(cols * placement.pixel_spacing[1])
        ds.ImagedVolumeHeight = _ds(rows * placement.pixel_spacing[0])
    tiles = -(-rows // tile_shape[0]) * -(-cols // tile_shape[1])
    per_pass = 1 if kind == "LABELMAP" else count
    ds.NumberOfFrames = tiles * per_pass
    return _write(
        ds,
        _passes(
            array,
            kind,
            count,
            tile=tile_shape,
            transfer_syntax=ts,
            max_value=max_fractional_value,
            label_dtype=label_dtype,
            chunk_edge=chunk_edge,
            progress=_Progress(int(ds.NumberOfFrames), "segmentation", progress),
        ),
        dest,
        frame_shape=tile_shape,
        storage_options=storage_options,
        offset_table=offset_table,
        eot_threshold=eot_threshold,
    )


def _count(
    array: dask.array.Array,
    kind: str,
    count: int,
    segment_labels: Sequence[str] | None,
    segment_descriptions: Sequence[Any] | None,
) -> tuple[int, Any]:
    """The number of segments (from the descriptions, or the labels' maximum) and pixel dtype."""
    if kind == "FRACTIONAL":
        return count, np.uint8
    given = segment_descriptions or segment_labels
    n = len(given) if given else int(array.max().compute())
    if n < 1:
        raise LayoutError("the labels hold no segment (all zero) and no segment was described")
    return n, np.uint8 if n < 256 else np.uint16


def _clipped(
    tile: tuple[int, int], shape: tuple[int, ...], kind: str, resampled: bool
) -> tuple[int, int]:
    """The source's tile; at most a resampled result's matrix (a small map is one frame)."""
    clipped = min(int(tile[0]), int(shape[0])), min(int(tile[1]), int(shape[1]))
    if not resampled or (kind == "BINARY" and (clipped[0] * clipped[1]) % 8):
        return tile
    return clipped


def _matching_level(like: Slide | Level, shape: tuple[int, ...]) -> Level:
    levels = like.pyramid if isinstance(like, Slide) else (like,)
    for level in levels:
        if tuple(level.matrix_shape) == tuple(shape):
            return level
    raise LayoutError(
        f"labels of shape {shape} match no level of the source "
        f"({[lv.matrix_shape for lv in levels]})"
    )


def _write(
    ds: Dataset,
    batches: Iterator[list[bytes]],
    dest: str | os.PathLike[str],
    *,
    frame_shape: tuple[int, int],
    storage_options: StorageOptions,
    offset_table: str,
    eot_threshold: int,
) -> str:
    bits = int(ds.BitsAllocated)
    try:
        if bits == 1:  # frames follow bit after bit, across byte boundaries
            return write_bitstream(
                ds,
                batches,
                dest,
                number_of_frames=int(ds.NumberOfFrames),
                bits_per_frame=frame_shape[0] * frame_shape[1],
                storage_options=storage_options,
            )
        written = write_instance(
            ds,
            batches,
            dest,
            number_of_frames=int(ds.NumberOfFrames),
            encapsulated=ds.file_meta.TransferSyntaxUID.is_encapsulated,
            frame_bytes=frame_shape[0] * frame_shape[1] * bits // 8,
            storage_options=storage_options,
            offset_table=offset_table,
            eot_threshold=eot_threshold,
        )
    except EncodeError as exc:  # raised in a task: it knows the tile, not the file
        raise EncodeError(f"{redact(os.fspath(dest))}: {exc}") from exc
    return written.url


def _pixel_measures(source: Dataset, volume: Volume, placement: VolumePlacement | None) -> Any:
    import highdicom as hd

    step = float(volume.spacing[0])
    thickness = source.get("SliceThickness")
    spacing = volume.spacing[1:] if placement is None else placement.pixel_spacing
    return hd.PixelMeasuresSequence(
        pixel_spacing=[float(v) for v in spacing],
        slice_thickness=float(thickness) if thickness else step,
        spacing_between_slices=step,
    )


#: Single-frame SOP classes by modality: what highdicom is shown for a frame of an
#: enhanced image (it builds the multi-frame source's functional groups otherwise).
_SINGLE_FRAME = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}


def _as_single_frame(
    ds: Dataset, frame: int, where: str, *, purpose: str = "a volume SEG"
) -> Dataset:
    """``ds`` (a fitted header) shown to highdicom as a single-frame image if it is a frame."""
    if frame >= 0:
        modality = str(ds.get("Modality", ""))
        if modality not in _SINGLE_FRAME:
            raise LayoutError(
                f"{where}: {purpose} over the frames of a multi-frame {modality or '?'} "
                f"image ({ds.SOPClassUID.name}) is not written; over multi-frame images, "
                f"only {', '.join(_SINGLE_FRAME)} are"
            )
        ds.SOPClassUID = _SINGLE_FRAME[modality]
    return ds


def _further(sources: SliceSources, present: list[int]) -> list[Dataset]:
    """The other source instances (once each: the frames of one image share it)."""
    first = str(sources.headers[present[0]].SOPInstanceUID)  # type: ignore[union-attr]
    seen = {first}
    out = []
    for k in present[1:]:
        uid = str(sources.headers[k].SOPInstanceUID)  # type: ignore[union-attr]
        if uid not in seen:
            seen.add(uid)
            out.append(_as_single_frame(sources.fitted(k), sources.frames[k], sources.where))
    return out


def _true_classes(ds: Dataset, sources: SliceSources) -> None:
    """The references of ``ds`` name each source's own SOP class (not the one shown)."""
    classes = {str(h.SOPInstanceUID): h.SOPClassUID for h in sources.headers if h is not None}
    for series in ds.get("ReferencedSeriesSequence", []):
        for ref in series.get("ReferencedInstanceSequence", []):
            uid = str(ref.ReferencedSOPInstanceUID)
            if uid in classes:
                ref.ReferencedSOPClassUID = classes[uid]


def _volume_geometry(
    first: Dataset, placement: VolumePlacement | None, k: int
) -> dict[str, Any] | None:
    """highdicom's orientation and first position of labels at their own in-plane grid."""
    import highdicom as hd

    if placement is None:
        return None
    orientation = [float(v) for v in first.ImageOrientationPatient]
    return {
        "plane_orientation": hd.PlaneOrientationSequence(
            coordinate_system="PATIENT", image_orientation=orientation
        ),
        "plane_positions": [
            hd.PlanePositionSequence(
                coordinate_system="PATIENT",
                image_position=[float(v) for v in placement.positions[k]],
            )
        ],
    }


def _frame_items(
    ds: Dataset,
    sources: SliceSources,
    present: list[int],
    per_pass: int,
    placement: VolumePlacement | None = None,
) -> list[Dataset]:
    """Per-frame functional groups: the template's, one per segment pass and slice (at the
    source image's position, or at the labels' own grid's)."""
    template = list(ds.PerFrameFunctionalGroupsSequence)
    items = []
    for s in range(per_pass):
        for j, k in enumerate(present):
            source = sources.headers[k]
            assert source is not None
            item = copy.deepcopy(template[s])
            item.PlanePositionSequence[0].ImagePositionPatient = (
                copy.deepcopy(source.ImagePositionPatient)
                if placement is None
                else [_ds(v) for v in placement.positions[k]]
            )
            content = item.FrameContentSequence[0]
            values = [int(v) for v in np.atleast_1d(content.DimensionIndexValues)]
            values[-1] = j + 1
            content.DimensionIndexValues = values if len(values) > 1 else values[0]
            for derivation in item.get("DerivationImageSequence", []):
                for ref in derivation.SourceImageSequence:
                    ref.ReferencedSOPClassUID = source.SOPClassUID
                    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
                    if sources.frames[k] >= 0:  # a frame of a multi-frame image
                        ref.ReferencedFrameNumber = sources.frames[k] + 1
                    elif "ReferencedFrameNumber" in ref:
                        del ref.ReferencedFrameNumber
            items.append(item)
    return items


def _volume_placement(
    volume: Volume, shape: tuple[int, ...], pixel_spacing: Any, affine: np.ndarray | None
) -> VolumePlacement | None:
    """The labels' own in-plane grid over ``volume``, or ``None`` when it is the volume's."""
    if pixel_spacing is None and affine is None:
        if shape != tuple(volume.spatial_shape):
            raise LayoutError(
                f"labels {shape} do not match the volume {volume.spatial_shape}: pass "
                "pixel_spacing= (mm) to write them at their own in-plane resolution"
            )
        return None
    placement = place_on_volume(volume, shape, pixel_spacing=pixel_spacing, affine=affine)
    own = np.asarray(volume.affine)[:3, 3] + np.arange(shape[0])[:, None] * volume.affine[:3, 0]
    same = (
        shape == tuple(volume.spatial_shape)
        and np.allclose(placement.pixel_spacing, volume.spacing[1:], rtol=1e-6)
        and np.allclose(placement.positions, own, atol=1e-4)
    )
    return None if same else placement


def _volume_seg(
    labels: Any,
    dest: str | os.PathLike[str],
    volume: Volume,
    *,
    pixel_spacing: Any,
    affine: np.ndarray | None,
    kind: str,
    ts: str,
    segment_labels: Sequence[str] | None,
    segment_descriptions: Sequence[Any] | None,
    algorithm: str,
    max_value: int,
    series_description: str | None,
    storage_options: StorageOptions,
    offset_table: str,
    eot_threshold: int,
    chunk_edge: int,
    progress: bool,
) -> str:
    array, count = _segments_axis(labels, 3, kind)
    placement = _volume_placement(volume, tuple(array.shape[-3:]), pixel_spacing, affine)
    sources = slice_sources(volume, purpose="a volume SEG", channels=True, multiframe=True)
    present = sources.present
    count, label_dtype = _count(array, kind, count, segment_labels, segment_descriptions)
    descriptions = list(segment_descriptions or _descriptions(count, segment_labels, algorithm))
    nslices, rows, cols = array.shape[-3:]
    if kind == "FRACTIONAL":
        pixels = np.zeros((1, rows, cols, count), np.float32)
        if count == 1:
            pixels = pixels[..., 0]
    else:
        pixels = np.zeros((1, rows, cols), label_dtype if kind == "LABELMAP" else np.uint8)
    first_url = str(sources.urls[present[0]])
    first = _completed(sources.fitted(present[0]), where=first_url, decoded=True)
    first = _as_single_frame(first, sources.frames[present[0]], first_url)
    if not first.get("SliceThickness"):
        first.SliceThickness = _ds(volume.spacing[0])
    ds = _template(
        [first],
        pixels,
        segmentation_type=kind,
        descriptions=descriptions,
        max_fractional_value=max_value,
        series_description=series_description,
        transfer_syntax=ts,
        tiled=None,
        further=_further(sources, present),
        pixel_measures=_pixel_measures(first, volume, placement),
        where_text=first_url,
        geometry=_volume_geometry(first, placement, present[0]),
    )
    _true_classes(ds, sources)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.SpacingBetweenSlices = _ds(volume.spacing[0])  # the template had one slice
    per_pass = 1 if kind == "LABELMAP" else count
    items = _frame_items(ds, sources, present, per_pass, placement)
    ds.PerFrameFunctionalGroupsSequence = items
    ds.NumberOfFrames = len(items)
    if len(present) < nslices:  # missing slices: no image there, no frame written
        array = array[:, present] if kind == "FRACTIONAL" else array[present]
        nslices = len(present)
    # the volume as a column of slices: one "tile" per slice, in slice order
    if kind == "FRACTIONAL":
        flat = array.reshape(count, nslices * rows, cols)
    else:
        flat = array.reshape(nslices * rows, cols)
    return _write(
        ds,
        _passes(
            flat,
            kind,
            count,
            tile=(rows, cols),
            transfer_syntax=ts,
            max_value=max_value,
            label_dtype=label_dtype,
            chunk_edge=max(chunk_edge, rows),
            progress=_Progress(len(items), "segmentation", progress),
        ),
        dest,
        frame_shape=(rows, cols),
        storage_options=storage_options,
        offset_table=offset_table,
        eot_threshold=eot_threshold,
    )
