"""Source headers as found in the wild, made fit for what the writers derive from them.

A result written over a volume copies or references the headers of its slices. Real
series break the assumptions of the libraries that build such objects (highdicom for
SEG): this module resolves them once, for every writer.

* **Text.** Specific Character Set may be empty (GE CTs), multi-valued (ISO 2022 code
  extensions) or unknown. The text of a copied header is decoded with the source's own
  character set (pydicom's fallbacks when it is empty or unknown) and the copy declares
  UTF-8 (``ISO_IR 192``), which encodes every decoded value.
* **Frame of Reference.** The CT and MR IODs make it mandatory, yet it is sometimes
  absent. A result placed by patient positions needs one (the SEG IOD requires it with
  Plane Position (Patient)). The writers then write a *new* Frame of Reference UID,
  shared by every slice of the result: the positions of the source's slices are in one
  patient coordinate system, and a new UID names it without claiming to be another
  series' (PS3.3 C.7.4.1.1.1). ``PositionReferenceIndicator`` is left empty (type 2).
* **Which image is behind each slice** of a ``like=`` volume: the volume's record of its
  source frames, or -- for a ``transformed()``, computed or slab-sliced volume, which
  keeps no such record -- the files listed in its metadata (``slice_files``) with the
  headers of the series it was opened from. The volume must still have the geometry of
  those images (same rows and columns, orientation, spacing and positions): a cropped or
  flipped volume is refused, it would be written over the wrong pixels.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import InvalidHeaderError, LayoutError
from dicom_dask.frames.storage import redact
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.writers.dataset import new_uid

__all__ = [
    "SINGLE_FRAME",
    "TYPE2",
    "SliceSources",
    "as_single_frame",
    "completed_source",
    "decoded_copy",
    "frame_view",
    "slice_sources",
    "volume_frame_item",
]

#: What written headers declare: UTF-8 encodes any decoded text.
UTF8 = "ISO_IR 192"


def decoded_copy(ds: Dataset, *, where: str) -> Dataset:
    """A deep copy of ``ds`` whose text is decoded, declared ``ISO_IR 192`` (UTF-8).

    Raises
    ------
    InvalidHeaderError
        When the text cannot be decoded at all (naming ``where`` and the character set).
    """
    out = copy.deepcopy(ds)
    charset = ds.get("SpecificCharacterSet", None)
    try:
        with warnings.catch_warnings():
            # pydicom warns of empty or unknown values and falls back to ISO 8859-1
            warnings.simplefilter("ignore")
            out.decode()
            for elem in out.iterall():
                _ = elem.value  # raw elements of nested sequences too
    except Exception as exc:
        raise InvalidHeaderError(
            f"{where}: its text cannot be decoded with Specific Character Set (0008,0005) "
            f"{charset!r}: {exc}"
        ) from exc
    out.SpecificCharacterSet = UTF8
    return out


@dataclass(frozen=True)
class SliceSources:
    """The source image of each slice of a volume (``None`` where a slice is missing).

    Attributes
    ----------
    headers : tuple
        One header per slice, ``None`` for a missing slice.
    urls : tuple
        The file of each slice (``None`` where missing).
    where : str
        What the volume was opened from, for messages.
    frame_of_reference_uid : str
        The source's Frame of Reference UID, or a new one when the source has none.
    new_frame_of_reference : bool
        Whether ``frame_of_reference_uid`` is new (the source had none).
    frames : tuple of int
        The frame (0-based) of a multi-frame image behind each slice, -1 when the slice
        is a single-frame image (or missing).
    """

    headers: tuple[Dataset | None, ...]
    urls: tuple[str | None, ...]
    where: str
    frame_of_reference_uid: str
    new_frame_of_reference: bool
    #: The frame (0-based) of a multi-frame image behind each slice, -1 for single-frame.
    frames: tuple[int, ...] = ()

    @property
    def present(self) -> list[int]:
        """Indices of the slices that have a source image."""
        return [k for k, h in enumerate(self.headers) if h is not None]

    def fitted(self, k: int) -> Dataset:
        """A copy of slice ``k``'s header: text decoded (UTF-8), Frame of Reference set."""
        header = self.headers[k]
        if header is None:
            raise LayoutError(f"{self.where}: slice {k} is missing")
        out = decoded_copy(header, where=str(self.urls[k]))
        if self.new_frame_of_reference:
            out.FrameOfReferenceUID = self.frame_of_reference_uid
            out.PositionReferenceIndicator = ""
        return out


def _where(volume: Volume) -> str:
    meta: Mapping[str, Any] = volume.metadata
    urls = list(meta.get("urls", []))
    if urls:
        first = redact(str(urls[0]))
        return first if len(urls) == 1 else f"{first} (+{len(urls) - 1} files)"
    return "the volume"


def _recorded(
    volume: Volume,
) -> tuple[list[Dataset | None], list[str | None], list[int]] | None:
    """Per-slice headers from the volume's own record, or from its metadata and indexes."""
    n = volume.spatial_shape[0]
    if volume.sources is not None:
        datasets, frames = volume.sources[0], np.asarray(volume.sources[1])
        urls = volume.sources[2] if len(volume.sources) > 2 else [None] * len(datasets)
        first = frames.reshape(n, -1, 2)[:, 0, :]
        headers = [None if i < 0 else datasets[int(i)] for i in first[:, 0]]
        names = [None if i < 0 else str(urls[int(i)]) for i in first[:, 0]]
        frame_numbers = [int(f) for f in first[:, 1]]
    else:
        files = volume.metadata.get("slice_files")
        if files is None or not volume.indexes or len(files) != n:
            return None
        by_url = {str(ix.url): ix.header.dataset for ix in volume.indexes}
        headers, names, frame_numbers = [], [], []
        for entry in files:
            if entry is None:
                headers.append(None)
                names.append(None)
                frame_numbers.append(-1)
                continue
            url, frame = str(entry[0]), int(entry[1])
            if url not in by_url:
                return None
            headers.append(by_url[url])
            names.append(url)
            frame_numbers.append(frame)
    return headers, names, frame_numbers


def _is_multiframe(header: Dataset, frame: int) -> bool:
    return frame > 0 or int(header.get("NumberOfFrames", 1) or 1) > 1


def _group(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """Functional group ``keyword`` of ``frame`` (per-frame first, then shared)."""
    groups = []
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and frame < len(per):
        groups.append(per[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(keyword)
        if items:
            return items[0]
    return None


_FRAME_ONLY = {
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
    "NumberOfFrames",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
}


def frame_view(ds: Dataset, frame: int) -> Dataset:
    """Frame ``frame`` of a multi-frame image as a single-frame header: its position,
    orientation and pixel measures moved from the functional groups to the top level.

    The view keeps the image's SOP Class and Instance UIDs: what references it must add
    Referenced Frame Number ``frame + 1``.
    """
    view = Dataset()
    for elem in ds:
        if elem.keyword not in _FRAME_ONLY:
            view.add(elem)
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta
    position = _group(ds, frame, "PlanePositionSequence")
    orientation = _group(ds, frame, "PlaneOrientationSequence")
    measures = _group(ds, frame, "PixelMeasuresSequence")
    if position is not None and "ImagePositionPatient" in position:
        view.ImagePositionPatient = position.ImagePositionPatient
    if orientation is not None and "ImageOrientationPatient" in orientation:
        view.ImageOrientationPatient = orientation.ImageOrientationPatient
    if measures is not None:
        for keyword in ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"):
            if keyword in measures:
                view[keyword] = measures[keyword]
    return view


def slice_sources(
    volume: Volume, *, purpose: str, channels: bool = False, multiframe: bool = False
) -> SliceSources:
    """The source image of each slice of ``volume``, checked against its geometry.

    Parameters
    ----------
    volume : Volume
        Opened with ``open_volume`` from single-frame images, possibly sliced along its
        slices, ``transformed()`` or computed since.
    purpose : str
        What is written (``"a volume SEG"``...), for messages.
    channels : bool
        Whether a volume with channel dimensions (several volumes at the same positions,
        e.g. diffusion gradients) is taken: each slice is then the image of the first
        channel at that position.
    multiframe : bool
        Whether slices may be frames of multi-frame (enhanced) images: their headers are
        then [`frame_view`][dicom_dask.integrations.writers.headers.frame_view]s, and
        ``frames`` says which frame each one is.

    Raises
    ------
    LayoutError
        When the volume has channel dimensions, no record of its sources, multi-frame
        sources, or not the geometry of its source images (cropped, flipped, permuted).
    """
    where = _where(volume)
    if volume.channels and not channels:
        raise LayoutError(
            f"{where}: {purpose} is written over a volume without channel dimensions, "
            f"not {list(volume.channels)}: select one volume first"
        )
    found = _recorded(volume)
    if found is None:
        raise LayoutError(
            f"{where}: {purpose} references the images behind each slice; this volume has "
            "no record of them (built from an array, or its slice axis permuted): pass "
            "the volume from open_volume, sliced, transformed() or computed"
        )
    headers, urls, frames = found
    if not any(h is not None for h in headers):
        raise LayoutError(f"{where}: no slice of the volume has a source image")
    multi = [k for k, h in enumerate(headers) if h is not None and _is_multiframe(h, frames[k])]
    if multi and not multiframe:
        raise LayoutError(
            f"{redact(str(urls[multi[0]]))}: a multi-frame (enhanced) image; {purpose} "
            "is written from single-frame images, one per slice"
        )
    by_frame: dict[tuple[int, int], Dataset] = {}
    for k in multi:
        header = headers[k]
        assert header is not None
        key = (id(header), frames[k])
        if key not in by_frame:
            by_frame[key] = frame_view(header, frames[k])
        headers[k] = by_frame[key]
    for k, header in enumerate(headers):
        if header is not None:
            _check_slice(volume, k, header, str(urls[k]))
    present = [h for h in headers if h is not None]
    uids = {str(h.get("FrameOfReferenceUID", "") or "") for h in present}
    uids.discard("")
    if len(uids) > 1:
        raise LayoutError(f"{where}: the slices are in {len(uids)} Frames of Reference")
    new = not uids
    keys = {(str(h.SOPInstanceUID), frames[k]) for k, h in enumerate(headers) if h is not None}
    if len(keys) != len(present):
        raise LayoutError(f"{where}: {purpose} needs one image (or frame) per slice")
    return SliceSources(
        tuple(headers),
        tuple(urls),
        where,
        uids.pop() if uids else new_uid(),
        new,
        tuple(frames[k] if k in multi else -1 for k in range(len(headers))),
    )


def _floats(header: Dataset, keyword: str, count: int, where: str) -> np.ndarray:
    value = header.get(keyword)
    if value is None:
        raise InvalidHeaderError(f"{where}: no {keyword} to place the image by")
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidHeaderError(f"{where}: {keyword} is {value!r}") from exc
    if out.shape != (count,):
        raise InvalidHeaderError(f"{where}: {keyword} has {out.size} values, not {count}")
    return out


def _check_slice(volume: Volume, k: int, header: Dataset, where: str) -> None:
    """Slice ``k`` of ``volume`` lies on the pixels of ``header`` (else a LayoutError)."""
    _, rows, cols = volume.spatial_shape
    shape = (int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0))
    if shape != (rows, cols):
        raise LayoutError(
            f"{where}: the volume's slices are {rows} x {cols} pixels but the image is "
            f"{shape[0]} x {shape[1]} (a cropped volume has no image of its own to reference)"
        )
    orientation = _floats(header, "ImageOrientationPatient", 6, where)
    spacing = _floats(header, "PixelSpacing", 2, where)
    position = _floats(header, "ImagePositionPatient", 3, where)
    columns_axis = volume.affine[:3, 2]
    rows_axis = volume.affine[:3, 1]
    expected = (orientation[:3] * spacing[1], orientation[3:] * spacing[0])
    tolerance = 1e-3 * max(float(spacing.max()), 1e-6)
    origin = volume.map_indices_to_reference([[k, 0, 0]])[0]
    if (
        not np.allclose(columns_axis, expected[0], atol=tolerance)
        or not np.allclose(rows_axis, expected[1], atol=tolerance)
        or np.linalg.norm(origin - position) > 0.25 * float(spacing.min())
    ):
        raise LayoutError(
            f"{where}: slice {k} of the volume is not on this image's pixels (orientation "
            f"{orientation.tolist()}, spacing {spacing.tolist()}, position {position.tolist()}; "
            f"the volume places its first pixel at {np.round(origin, 3).tolist()}): a "
            "flipped, cropped or resampled volume cannot reference it"
        )


#: Type 2 attributes of the patient and study modules that highdicom reads from a source.
TYPE2 = (
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


def completed_source(ds: Dataset, *, where: str, decoded: bool = False) -> Dataset:
    """A copy of a source header fit for highdicom.

    Its text decoded and declared UTF-8 (an empty or multi-valued Specific Character
    Set is common), the empty ``TYPE2`` attributes
    highdicom reads, and a new Frame of Reference when it has none.

    Parameters
    ----------
    ds : pydicom.Dataset
        The source's header.
    where : str
        Its file, for messages.
    decoded : bool
        ``ds`` is already a decoded copy (as
        [`SliceSources.fitted`][dicom_dask.integrations.writers.headers.SliceSources.fitted]
        gives): it is only deep-copied.

    Returns
    -------
    pydicom.Dataset
        The completed copy.
    """
    out = copy.deepcopy(ds) if decoded else decoded_copy(ds, where=where)
    for keyword in TYPE2:
        if keyword not in out:
            setattr(out, keyword, "")
    if not out.get("FrameOfReferenceUID"):
        out.FrameOfReferenceUID = new_uid()
        out.PositionReferenceIndicator = ""
    return out


#: Single-frame SOP classes by modality: what highdicom is shown for a frame of an
#: enhanced image (it builds the multi-frame source's functional groups otherwise).
SINGLE_FRAME = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}


def as_single_frame(
    ds: Dataset, frame: int, where: str, *, purpose: str = "a volume SEG"
) -> Dataset:
    """``ds`` (a fitted header) shown to highdicom as a single-frame image if it is a frame.

    Parameters
    ----------
    ds : pydicom.Dataset
        A fitted copy of the source header (changed in place).
    frame : int
        The frame (0-based) of a multi-frame image, or -1 for a single-frame image.
    where : str
        The source's file, for messages.
    purpose : str
        What is written, for messages.

    Returns
    -------
    pydicom.Dataset
        ``ds``, with the single-frame SOP class of its modality when it is a frame.

    Raises
    ------
    LayoutError
        When ``ds`` is a frame of a multi-frame image of another modality than those of
        ``SINGLE_FRAME`` (CT, MR, PET).
    """
    if frame >= 0:
        modality = str(ds.get("Modality", ""))
        if modality not in SINGLE_FRAME:
            raise LayoutError(
                f"{where}: {purpose} over the frames of a multi-frame {modality or '?'} "
                f"image ({ds.SOPClassUID.name}) is not written; over multi-frame images, "
                f"only {', '.join(SINGLE_FRAME)} are"
            )
        ds.SOPClassUID = SINGLE_FRAME[modality]
    return ds


def volume_frame_item(
    template: Dataset, index: int, position: Any, sources: SliceSources, k: int
) -> Dataset:
    """The per-frame functional groups of frame ``index`` over slice ``k`` of a volume.

    A copy of highdicom's ``template`` item with the frame's position, its dimension
    index and its source image (a frame of an enhanced image names its frame number).

    Parameters
    ----------
    template : pydicom.Dataset
        An item of the template's Per-Frame Functional Groups Sequence.
    index : int
        The frame's place (0-based) among the written slices.
    position : sequence
        Image Position (Patient) of the frame, as it is to be written.
    sources : SliceSources
        The source images of the volume's slices.
    k : int
        The slice of the volume the frame is over.

    Returns
    -------
    pydicom.Dataset
        The new item.
    """
    source = sources.headers[k]
    assert source is not None
    item = copy.deepcopy(template)
    item.PlanePositionSequence[0].ImagePositionPatient = position
    content = item.FrameContentSequence[0]
    values = [int(v) for v in np.atleast_1d(content.DimensionIndexValues)]
    values[-1] = index + 1
    content.DimensionIndexValues = values if len(values) > 1 else values[0]
    for derivation in item.get("DerivationImageSequence", []):
        for ref in derivation.SourceImageSequence:
            ref.ReferencedSOPClassUID = source.SOPClassUID
            ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
            if sources.frames[k] >= 0:  # a frame of a multi-frame image
                ref.ReferencedFrameNumber = sources.frames[k] + 1
            elif "ReferencedFrameNumber" in ref:
                del ref.ReferencedFrameNumber
    return item
