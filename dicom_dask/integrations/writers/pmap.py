"""``to_dicom_pmap``: a float (or quantised) result as a DICOM Parametric Map.

A Parametric Map carries real-world values -- probabilities, scores, ADC, T1 -- with a
Real World Value Mapping that says what the stored values mean (label, unit, range,
slope and intercept). highdicom's ``ParametricMap`` is the reference for its content:
here it builds the header from a one-tile (slide) or one-slice (volume) template, the
header is widened to the result's full geometry, and the frames are encoded tile by
tile inside dask tasks and streamed to the file (see
[`write_instance`][dicom_dask.integrations.writers.stream.write_instance]), so memory
stays at a few bands of tiles whatever the size of the map.

The map has its own resolution: over a slide, ``pixel_spacing=`` (and ``origin=``) or
an xarray map's ``affine`` place it in the slide's Frame of Reference (see
[`place_on_slide`][dicom_dask.integrations.writers.placement.place_on_slide]); over a
volume it has one frame per slice that has a source image, at the slice's position,
with the volume's or its own in-plane spacing; the source headers are resolved as the
SEG's (see [`slice_sources`][dicom_dask.integrations.writers.headers.slice_sources]).

Pixel data and compression (PS3.3 C.8.32 Parametric Map, PS3.5 A.4):

* ``float32`` / ``float64`` maps go to Float Pixel Data (7FE0,0008) / Double Float Pixel
  Data (7FE0,0009). The standard defines no compression of float pixel data (it is
  never encapsulated): these are written in Explicit VR Little Endian, exactly;
* ``uint8`` / ``uint16`` maps go to Pixel Data, with the Real World Value Mapping's
  ``slope`` and ``intercept`` giving the real values, and may be compressed losslessly:
  ``"jpegls"``, ``"jpeg2000-lossless"``, ``"rle"`` (what highdicom allows for the IOD).
  Quantise a probability map to ``uint16`` with ``slope=1 / 65535`` to compress it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError, UnsupportedTransferSyntaxError
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.writers.common import CHUNK_EDGE, FrameProgress, encoded_bands
from dicom_dask.integrations.writers.dataset import (
    decimal_string,
    new_uid,
    slide_context,
    software_version,
)
from dicom_dask.integrations.writers.encode import Encoder, transfer_syntax_uid
from dicom_dask.integrations.writers.headers import (
    SliceSources,
    as_single_frame,
    completed_source,
    slice_sources,
    volume_frame_item,
)
from dicom_dask.integrations.writers.options import WriteOptions, check_destination, compute
from dicom_dask.integrations.writers.placement import (
    SlidePlacement,
    VolumePlacement,
    place_on_slide,
    place_on_volume,
    slide_geometry,
    unwrap,
)
from dicom_dask.integrations.writers.stream import write_instance

if TYPE_CHECKING:
    import dask.array

__all__ = ["to_dicom_pmap"]

_INTEGER_SYNTAXES = {
    _uid.ExplicitVRLittleEndian,
    _uid.JPEGLSLossless,
    _uid.JPEG2000Lossless,
    _uid.RLELossless,
}
_PIXEL_KEYWORD = {"float32": "FloatPixelData", "float64": "DoubleFloatPixelData"}


@dataclass(frozen=True)
class _FloatFrame:
    """A float tile as little-endian native bytes (Float / Double Float Pixel Data)."""

    dtype: str

    def __call__(self, tile: np.ndarray) -> bytes:
        return np.ascontiguousarray(tile, dtype=np.dtype(self.dtype).newbyteorder("<")).tobytes()


@dataclass(frozen=True)
class _Content:
    """What the map means: the Real World Value Mapping and the content labels."""

    lut_label: str
    lut_explanation: str
    unit: Any
    quantity: Any
    slope: float
    intercept: float
    value_range: tuple[float, float] | None
    content_label: str
    content_description: str | None
    series_description: str | None


def _as_map(data: Any, ndim: int, like: Any) -> tuple[dask.array.Array, np.ndarray | None]:
    import dask.array as da

    inner, affine = unwrap(data, like)
    arr = inner if isinstance(inner, da.Array) else da.asarray(inner)
    if arr.ndim == ndim + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != ndim:
        where = "(rows, columns) over a slide" if ndim == 2 else "(slices, rows, columns)"
        raise LayoutError(f"a Parametric Map takes one map {where}, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    elif kind == "b":
        arr = arr.astype(np.uint8)
    elif kind == "u" and arr.dtype.itemsize > 2:
        raise LayoutError(f"Parametric Map integer pixel data is 8 or 16 bits, not {arr.dtype}")
    elif kind not in "fu":
        raise LayoutError(
            f"a Parametric Map holds float or unsigned 8/16-bit values, not {arr.dtype}: "
            "cast it (e.g. .astype('float32'))"
        )
    return arr, affine


def _syntax(transfer_syntax: str, dtype: np.dtype[Any]) -> _uid.UID:
    ts = transfer_syntax_uid(transfer_syntax)
    if dtype.kind == "f" and ts != _uid.ExplicitVRLittleEndian:
        raise UnsupportedTransferSyntaxError(
            f"{dtype} Parametric Maps are Float Pixel Data, which the standard never "
            f"encapsulates: write them in 'explicit', not {transfer_syntax!r} (or quantise "
            "to uint16 with slope= to compress losslessly)"
        )
    if ts not in _INTEGER_SYNTAXES:
        raise UnsupportedTransferSyntaxError(
            f"a Parametric Map is written losslessly: 'explicit', 'jpegls', "
            f"'jpeg2000-lossless' or 'rle', not {transfer_syntax!r}"
        )
    return ts


def _unit(unit: Any) -> Any:
    import highdicom as hd

    if isinstance(unit, str):
        meaning = "no units" if unit == "1" else unit
        return hd.sr.CodedConcept(value=unit, scheme_designator="UCUM", meaning=meaning)
    return unit


def _value_range(arr: dask.array.Array, given: Any, progress: bool) -> tuple[float, float]:
    import dask.array as da

    if given is not None:
        lo, hi = (float(v) for v in given)
    else:
        lo, hi = (float(v) for v in compute(da.nanmin(arr), da.nanmax(arr), progress=progress))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = 0.0, 1.0  # an empty (all-NaN) map
    if hi < lo:
        raise LayoutError(f"value_range must be (low, high), got {(lo, hi)}")
    return lo, hi


def _mapping(content: _Content, dtype: np.dtype[Any], vrange: tuple[float, float]) -> Any:
    import highdicom as hd

    if dtype.kind == "u":
        stored: tuple[Any, Any] = (int(np.floor(vrange[0])), int(np.ceil(vrange[1])))
    else:
        stored = (float(vrange[0]), float(vrange[1]))
    return hd.pm.RealWorldValueMapping(
        lut_label=content.lut_label,
        lut_explanation=content.lut_explanation,
        unit=_unit(content.unit),
        value_range=stored,
        slope=content.slope,
        intercept=content.intercept,
        quantity_definition=content.quantity,
    )


def _template(
    source: Dataset,
    pixels: np.ndarray,
    *,
    content: _Content,
    vrange: tuple[float, float],
    ts: str,
    **geometry: Any,
) -> Dataset:
    """highdicom's Parametric Map of a one-tile/one-slice template, without its pixels."""
    import highdicom as hd

    # the VOI window spans the stored values' range (at least one step of an integer map)
    width = max(vrange[1] - vrange[0], 1.0 if pixels.dtype.kind == "u" else 1e-6)
    pm = hd.pm.ParametricMap(
        source_images=[source],
        pixel_array=pixels,
        series_instance_uid=new_uid(),
        series_number=902,
        sop_instance_uid=new_uid(),
        instance_number=1,
        manufacturer="dicom_dask",
        manufacturer_model_name="dicom_dask",
        software_versions=software_version(),
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[_mapping(content, pixels.dtype, vrange)],
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=(vrange[0] + vrange[1]) / 2,
                window_width=width,
                # LINEAR needs a width of 1 or more (PS3.3 C.11.2.1.2): exact for narrow ranges
                voi_lut_function="LINEAR_EXACT" if width < 1 else None,
            )
        ],
        # the template's frame is encoded natively (highdicom's JPEG 2000 refuses frames
        # under 32 pixels); the syntax of the streamed frames is set below
        transfer_syntax_uid=_uid.ExplicitVRLittleEndian,
        content_label=content.content_label,
        content_description=content.content_description,
        **geometry,
    )
    pm.file_meta.TransferSyntaxUID = _uid.UID(ts)
    if content.series_description:
        pm.SeriesDescription = content.series_description
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in pm:
            del pm[keyword]
    return pm


def _frame_encoder(dtype: np.dtype[Any], ts: str) -> Any:
    if dtype.kind == "f":
        return _FloatFrame(str(dtype))
    return Encoder(ts, 1, str(dtype))


def _write(
    ds: Dataset,
    batches: Iterator[list[bytes]],
    dest: str | os.PathLike[str],
    *,
    dtype: np.dtype[Any],
    frame_shape: tuple[int, int],
    options: WriteOptions,
) -> str:
    written = write_instance(
        ds,
        batches,
        dest,
        number_of_frames=int(ds.NumberOfFrames),
        encapsulated=ds.file_meta.TransferSyntaxUID.is_encapsulated,
        frame_bytes=frame_shape[0] * frame_shape[1] * dtype.itemsize,
        storage_options=options.storage_options,
        offset_table=options.offset_table,
        eot_threshold=options.eot_threshold,
        pixel_keyword=_PIXEL_KEYWORD.get(str(dtype), "PixelData"),
    )
    return written.url


def to_dicom_pmap(
    data: Any,
    dest: str | os.PathLike[str],
    *,
    like: Slide | Level | Volume,
    pixel_spacing: float | tuple[float, float] | None = None,
    origin: tuple[float, ...] | None = None,
    lut_label: str = "score",
    lut_explanation: str | None = None,
    unit: Any = "1",
    quantity: Any = None,
    slope: float = 1.0,
    intercept: float = 0.0,
    value_range: tuple[float, float] | None = None,
    content_label: str = "MAP",
    content_description: str | None = None,
    series_description: str | None = None,
    tile: int | tuple[int, int] | None = None,
    transfer_syntax: str | None = None,
    offset_table: str | None = None,
    eot_threshold: int | None = None,
    chunk_edge: int | None = None,
    options: WriteOptions | Mapping[str, Any] | None = None,
    storage_options: Any = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> str:
    """Write ``data`` over a slide or a volume as a DICOM Parametric Map file ``dest``.

    Parameters
    ----------
    data : dask array, numpy array or xarray.DataArray
        Real-world values ``(rows, columns)`` over a slide, ``(slices, rows, columns)``
        over a volume; ``float32``/``float64`` (written exactly, NaN included), or
        ``uint8``/``uint16`` stored values that ``slope`` and ``intercept`` map to real
        values. A DataArray with an ``affine`` attribute (a
        [`PatchSampler.to_map`][dicom_dask.integrations.patches.PatchSampler.to_map]
        result) carries its own spacing and origin.
    dest : str or path
        The file to write, local or an fsspec URL.
    like : Slide, Level or Volume
        The source: patient, study, specimen, Frame of Reference and orientation come
        from it, and the map references it. A volume as ``open_volume`` gives it --
        single-frame images or an enhanced CT, MR or PET image -- sliced along its
        slices, ``transformed()`` or computed (the geometry of its images; with channel
        dimensions, the first channel's images are referenced). A missing slice has no
        frame; a source without a Frame of Reference gets a new one; the header text
        is written in UTF-8 whatever the source's Specific Character Set (see
        [`slice_sources`][dicom_dask.integrations.writers.headers.slice_sources]).
    pixel_spacing : float or (float, float), optional
        Row and column spacing of the map in mm, when it is not at a level's (or the
        volume's) resolution.
    origin : (x, y[, z]), optional
        Over a slide: slide mm of the centre of the map's pixel ``(0, 0)`` (default: the
        map's top-left corner on level 0's).
    lut_label, lut_explanation, unit, quantity
        The Real World Value Mapping: a label (16 characters at most), an explanation, a
        UCUM unit (a string such as ``"1"`` or ``"mm2/s"``, or a coded concept) and an
        optional quantity definition code.
    slope, intercept : float
        Real value = stored value x ``slope`` + ``intercept``.
    value_range : (float, float), optional
        The stored values' range (default: computed, one pass over the map).
    tile : int or (int, int), optional
        Frame size of a slide map (default: the source level's tile, at most the map).
    transfer_syntax : str, optional
        ``"explicit"`` (the default); integer maps also ``"jpegls"``,
        ``"jpeg2000-lossless"``, ``"rle"``.
    offset_table : {"auto", "bot", "eot", "empty"}, optional
        The offset table of an encapsulated map (default ``"auto"``: Basic, or Extended
        past ``eot_threshold`` bytes, 4 GiB).
    eot_threshold : int, optional
        See ``offset_table``.
    chunk_edge : int, optional
        About the edge of the block one encoding task holds (default 2048).
    options : WriteOptions or mapping, optional
        The options every writer shares
        ([`WriteOptions`][dicom_dask.integrations.writers.options.WriteOptions]); the
        keywords of the same names given here take precedence.
    storage_options : mapping or callable, optional
        fsspec options of ``dest``.
    overwrite : bool
        Replace ``dest`` if it exists (also ``options.overwrite``); otherwise an existing
        ``dest`` raises [`DestinationExistsError`][dicom_dask.errors.DestinationExistsError]
        before anything is computed.

    Returns
    -------
    str
        The written file.
    """
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
    check_destination(
        [os.fspath(dest)], storage_options=opts.storage_options, overwrite=opts.overwrite
    )
    content = _Content(
        lut_label=lut_label,
        lut_explanation=lut_explanation or lut_label,
        unit=unit,
        quantity=quantity,
        slope=float(slope),
        intercept=float(intercept),
        value_range=value_range,
        content_label=content_label,
        content_description=content_description,
        series_description=series_description,
    )
    if isinstance(like, Volume):
        arr, affine = _as_map(data, 3, like)
        ts = _syntax(str(opts.transfer_syntax), arr.dtype)
        frames = place_on_volume(like, arr.shape, pixel_spacing=pixel_spacing, affine=affine)
        return _volume_pmap(arr, dest, like, frames, content, ts, opts)
    if not isinstance(like, Slide | Level):
        raise LayoutError(f"like= must be a Slide, Level or Volume, not {type(like).__name__}")
    arr, affine = _as_map(data, 2, like)
    ts = _syntax(str(opts.transfer_syntax), arr.dtype)
    placement = place_on_slide(
        like, arr.shape, pixel_spacing=pixel_spacing, origin=origin, affine=affine
    )
    return _slide_pmap(arr, dest, placement, content, ts, opts, tile)


def _tile_shape(placement: SlidePlacement, tile: int | tuple[int, int] | None) -> tuple[int, int]:
    if tile is None:
        th, tw = placement.level.tile_shape
        return min(th, placement.shape[0]), min(tw, placement.shape[1])
    pair = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    if min(pair) < 1:
        raise LayoutError(f"tile must be positive, not {tile!r}")
    return pair


def _source_copy(ds: Dataset, *, where: str) -> Dataset:
    """``ds`` (the header of ``where``) with its text declared UTF-8 and the empty type 2
    attributes highdicom reads; an empty Specific Character Set is dropped."""
    out = completed_source(ds, where=where)
    if "SpecificCharacterSet" in out and not out.SpecificCharacterSet:
        del out.SpecificCharacterSet
    return out


def slide_source(level: Level, tile: tuple[int, int]) -> Dataset:
    """A copy of ``level``'s header as highdicom's one-tile source: type 2 attributes
    and the specimen module completed, the total pixel matrix one tile."""
    source = _source_copy(level.image.dataset, where=level.urls[0] if level.urls else "the slide")
    filled = slide_context(source, samples=level.samples).common
    for keyword in (
        "IssuerOfTheContainerIdentifierSequence",
        "ContainerTypeCodeSequence",
        "SpecimenDescriptionSequence",
    ):
        if keyword not in source:
            source[keyword] = filled[keyword]
    source.TotalPixelMatrixRows, source.TotalPixelMatrixColumns = tile
    return source


def _slide_pmap(
    arr: dask.array.Array,
    dest: str | os.PathLike[str],
    placement: SlidePlacement,
    content: _Content,
    ts: str,
    opts: WriteOptions,
    tile: int | tuple[int, int] | None,
) -> str:
    tile_shape = _tile_shape(placement, tile)
    vrange = _value_range(arr, content.value_range, opts.progress)
    geometry = slide_geometry(placement)
    ds = _template(
        slide_source(placement.level, tile_shape),
        np.zeros(tile_shape, arr.dtype),
        content=content,
        vrange=vrange,
        ts=ts,
        tile_pixel_array=True,
        tile_size=tile_shape,
        dimension_organization_type="TILED_FULL",
        **geometry,
    )
    rows, cols = placement.shape
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, cols
    for keyword in ("ImagedVolumeWidth", "ImagedVolumeHeight"):  # not in the PM IOD
        if keyword in ds:
            del ds[keyword]
    ds.NumberOfFrames = -(-rows // tile_shape[0]) * -(-cols // tile_shape[1])
    batches = encoded_bands(
        arr,
        tile=tile_shape,
        encoder=_frame_encoder(arr.dtype, ts),
        chunk_edge=int(opts.chunk_edge or CHUNK_EDGE),
        progress=FrameProgress(int(ds.NumberOfFrames), "parametric map", opts.progress),
    )
    return _write(ds, batches, dest, dtype=arr.dtype, frame_shape=tile_shape, options=opts)


def _volume_pmap(
    arr: dask.array.Array,
    dest: str | os.PathLike[str],
    volume: Volume,
    placement: VolumePlacement,
    content: _Content,
    ts: str,
    opts: WriteOptions,
) -> str:
    import highdicom as hd

    # the images behind each slice, from headers as found in the wild: a transformed or
    # computed volume, missing slices (no frame there), frames of an enhanced image,
    # no Frame of Reference (a new one), any Specific Character Set (the SEG's rules)
    sources = slice_sources(
        volume, purpose="a Parametric Map over a volume", channels=True, multiframe=True
    )
    present = sources.present
    nslices, rows, cols = placement.shape
    vrange = _value_range(arr, content.value_range, opts.progress)
    first_url = str(sources.urls[present[0]])
    first = completed_source(sources.fitted(present[0]), where=first_url, decoded=True)
    orientation = [float(v) for v in first.ImageOrientationPatient]
    first = as_single_frame(
        first, sources.frames[present[0]], first_url, purpose="a Parametric Map"
    )
    step = float(volume.spacing[0])
    if not first.get("SliceThickness"):  # type 2 in CT and MR: often empty, read by highdicom
        first.SliceThickness = decimal_string(step)
    thickness = float(first.SliceThickness)
    ds = _template(
        first,
        np.zeros((1, rows, cols), arr.dtype),
        content=content,
        vrange=vrange,
        ts=ts,
        pixel_measures=hd.PixelMeasuresSequence(
            pixel_spacing=list(placement.pixel_spacing),
            slice_thickness=thickness,
            spacing_between_slices=step,
        ),
        plane_orientation=hd.PlaneOrientationSequence(
            coordinate_system="PATIENT", image_orientation=orientation
        ),
        plane_positions=[
            hd.PlanePositionSequence(
                coordinate_system="PATIENT",
                image_position=[float(v) for v in placement.positions[present[0]]],
            )
        ],
    )
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.SpacingBetweenSlices = decimal_string(step)  # highdicom's, of a one-slice template
    if "Laterality" not in ds:
        # General Series Laterality, type 2C: the source's, or empty (dciodvfy requires
        # it of a patient-space map without Frame Laterality; never of a slide's)
        ds.Laterality = first.get("Laterality", "")
    template = ds.PerFrameFunctionalGroupsSequence[0]
    ds.PerFrameFunctionalGroupsSequence = [
        volume_frame_item(
            template, j, [decimal_string(v) for v in placement.positions[k]], sources, k
        )
        for j, k in enumerate(present)
    ]
    ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence = _references(sources, present)
    ds.NumberOfFrames = len(present)
    if len(present) < nslices:  # missing slices: no image there, no frame written
        arr = arr[present]
    flat = arr.reshape(len(present) * rows, cols)  # one "tile" per slice, in slice order
    batches = encoded_bands(
        flat,
        tile=(rows, cols),
        encoder=_frame_encoder(arr.dtype, ts),
        chunk_edge=max(int(opts.chunk_edge or CHUNK_EDGE), rows),
        progress=FrameProgress(len(present), "parametric map", opts.progress),
    )
    return _write(ds, batches, dest, dtype=arr.dtype, frame_shape=(rows, cols), options=opts)


def _references(sources: SliceSources, present: list[int]) -> list[Dataset]:
    """One reference per source instance (the frames of an enhanced image share one),
    naming its own SOP class."""
    items, seen = [], set()
    for k in present:
        source = sources.headers[k]
        assert source is not None
        uid = str(source.SOPInstanceUID)
        if uid not in seen:
            seen.add(uid)
            item = Dataset()
            item.ReferencedSOPClassUID = source.SOPClassUID
            item.ReferencedSOPInstanceUID = source.SOPInstanceUID
            items.append(item)
    return items
