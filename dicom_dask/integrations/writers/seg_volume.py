"""A Segmentation over a volume: one frame per segment and slice that has a source image.

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
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.writers.common import CHUNK_EDGE, FrameProgress
from dicom_dask.integrations.writers.dataset import decimal_string
from dicom_dask.integrations.writers.headers import (
    SliceSources,
    as_single_frame,
    completed_source,
    slice_sources,
    volume_frame_item,
)
from dicom_dask.integrations.writers.options import WriteOptions
from dicom_dask.integrations.writers.placement import VolumePlacement, place_on_volume
from dicom_dask.integrations.writers.seg_frames import (
    segment_count,
    segment_passes,
    segments_axis,
    write_segmentation,
)
from dicom_dask.integrations.writers.seg_header import SegContent, seg_template, template_pixels

__all__ = ["volume_seg"]


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


def _further(sources: SliceSources, present: list[int]) -> list[Dataset]:
    """The other source instances (once each: the frames of one image share it)."""
    first = str(sources.headers[present[0]].SOPInstanceUID)  # type: ignore[union-attr]
    seen = {first}
    out = []
    for k in present[1:]:
        uid = str(sources.headers[k].SOPInstanceUID)  # type: ignore[union-attr]
        if uid not in seen:
            seen.add(uid)
            out.append(as_single_frame(sources.fitted(k), sources.frames[k], sources.where))
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
            position = (
                copy.deepcopy(source.ImagePositionPatient)
                if placement is None
                else [decimal_string(v) for v in placement.positions[k]]
            )
            items.append(volume_frame_item(template[s], j, position, sources, k))
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


def _first_source(sources: SliceSources, present: list[int], volume: Volume) -> Dataset:
    """The first present slice's header, completed for highdicom's template."""
    first_url = str(sources.urls[present[0]])
    first = completed_source(sources.fitted(present[0]), where=first_url, decoded=True)
    first = as_single_frame(first, sources.frames[present[0]], first_url)
    if not first.get("SliceThickness"):
        first.SliceThickness = decimal_string(volume.spacing[0])
    return first


def volume_seg(
    labels: Any,
    dest: str | os.PathLike[str],
    volume: Volume,
    content: SegContent,
    *,
    pixel_spacing: Any,
    affine: np.ndarray | None,
    options: WriteOptions,
) -> str:
    """Write ``labels`` over ``volume`` as the Segmentation ``dest``; return its URL.

    Parameters
    ----------
    labels : array
        ``(slices, rows, columns)`` labels, or ``(segments, slices, rows, columns)``
        probabilities (``FRACTIONAL``).
    dest : str or path
        The file to write.
    volume : Volume
        The source (see [`to_dicom_seg`][dicom_dask.integrations.writers.seg.to_dicom_seg]).
    content : SegContent
        What the Segmentation holds.
    pixel_spacing : float or (float, float), optional
        The labels' own in-plane spacing (mm).
    affine : numpy.ndarray, optional
        The labels' own affine (an xarray result's).
    options : WriteOptions
        The destination's options.
    """
    kind = content.kind
    array, count = segments_axis(labels, 3, kind)
    placement = _volume_placement(volume, tuple(array.shape[-3:]), pixel_spacing, affine)
    sources = slice_sources(volume, purpose="a volume SEG", channels=True, multiframe=True)
    present = sources.present
    count, label_dtype = segment_count(array, count, content)
    descriptions = content.descriptions(count)
    nslices, rows, cols = array.shape[-3:]
    first = _first_source(sources, present, volume)
    ds = seg_template(
        [first],
        template_pixels(kind, (rows, cols), count, label_dtype),
        content,
        descriptions,
        tiled=None,
        further=_further(sources, present),
        pixel_measures=_pixel_measures(first, volume, placement),
        where_text=str(sources.urls[present[0]]),
        geometry=_volume_geometry(first, placement, present[0]),
    )
    _true_classes(ds, sources)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.SpacingBetweenSlices = decimal_string(volume.spacing[0])  # one slice's template
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
    batches = segment_passes(
        flat,
        content,
        count,
        tile=(rows, cols),
        label_dtype=label_dtype,
        chunk_edge=max(int(options.chunk_edge or CHUNK_EDGE), rows),
        progress=FrameProgress(len(items), "segmentation", options.progress),
    )
    return write_segmentation(ds, batches, dest, frame_shape=(rows, cols), options=options)
