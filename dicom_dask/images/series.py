"""Volumes: single-frame series and multi-frame images -> slices with positions.

Every frame that holds a slice becomes a `SliceRecord` (file, frame number,
Image Position/Orientation (Patient), pixel spacing, and a *channel key* for the
dimensions that are not spatial: temporal position, echo, segment, b-value...).
Records are grouped into stacks (series, orientation, stack ID, and whatever
channel dimension does not fill a complete grid), then sorted in space by
[`dicom_dask.images.geometry`][dicom_dask.images.geometry]. Nothing here imports dask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError
from dicom_dask.frames import FrameIndex
from dicom_dask.frames.values import fast_get

__all__ = ["SliceRecord", "Stack", "group_stacks", "slice_records"]

#: Dimension index pointers that locate a frame in space (not channel dimensions).
SPATIAL_POINTERS = {0x00200032, 0x00209057}
STACK_ID = 0x00209056
#: Single-frame attributes that split a series into channels when they vary.
CHANNEL_ATTRIBUTES = ("TemporalPositionIdentifier", "EchoNumbers")
_ROUND = 4  # decimals when comparing orientations


@dataclass(frozen=True, eq=False)
class SliceRecord:
    """One frame placed in patient space."""

    index: FrameIndex
    frame: int
    position: tuple[float, ...]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, ...]
    channel: tuple[tuple[str, Any], ...] = ()
    stack: str = ""
    #: Spacing Between Slices (or Slice Thickness): the step of a single-slice volume.
    thickness: float | None = None

    @property
    def url(self) -> str:
        """The file of this slice."""
        return self.index.url

    @property
    def series_uid(self) -> str:
        """Series Instance UID of the file."""
        return str(fast_get(self.index.header.dataset, "SeriesInstanceUID", ""))


def _floats(value: Any, n: int, what: str, where: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n:
        raise LayoutError(f"{where}: {what} is {value!r}, expected {n} numbers")
    return out


def _thickness(ds: Dataset | None) -> float | None:
    if ds is None:
        return None
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = fast_get(ds, keyword)
        if value not in (None, ""):
            try:
                return abs(float(value)) or None
            except (TypeError, ValueError):
                continue
    return None


def _item(groups: Dataset | None, sequence: str) -> Dataset | None:
    if groups is not None and sequence in groups and groups[sequence].value:
        return groups[sequence][0]  # type: ignore[no-any-return]
    return None


def _single_frame(index: FrameIndex) -> list[SliceRecord]:
    ds = index.header.dataset
    where = index.url
    ipp, iop = fast_get(ds, "ImagePositionPatient"), fast_get(ds, "ImageOrientationPatient")
    if ipp is None or iop is None:
        raise LayoutError(
            f"{where}: no (0020,0032) Image Position (Patient) / (0020,0037) Image "
            "Orientation (Patient): the image cannot be placed in a volume"
        )
    position = _floats(ipp, 3, "(0020,0032) Image Position (Patient)", where)
    orientation = _floats(iop, 6, "(0020,0037) Image Orientation (Patient)", where)
    spacing = _floats(
        fast_get(ds, "PixelSpacing", [1.0, 1.0]), 2, "(0028,0030) Pixel Spacing", where
    )
    channel = tuple(
        (name, str(value))
        for name in CHANNEL_ATTRIBUTES
        if (value := fast_get(ds, name)) not in (None, "")
    )
    n = index.header.description.number_of_frames
    offsets = ds.get("GridFrameOffsetVector")
    if n > 1 and offsets is not None:  # RT Dose: frames along the normal from the position
        normal = np.cross(orientation[:3], orientation[3:])
        gaps = [float(v) for v in offsets]
        if len(gaps) != n:
            raise LayoutError(
                f"{where}: (3004,000C) Grid Frame Offset Vector has {len(gaps)} values for "
                f"{n} frames"
            )
        return [
            SliceRecord(
                index,
                k,
                tuple(np.asarray(position) + normal * g),
                orientation,
                (spacing[0], spacing[1]),
                channel,
            )
            for k, g in enumerate(gaps)
        ]
    if n > 1:
        raise LayoutError(
            f"{where}: {n} frames without per-frame positions (no Per-Frame Functional "
            "Groups or Grid Frame Offset Vector): cannot stack them"
        )
    return [
        SliceRecord(
            index,
            0,
            position,
            orientation,
            (spacing[0], spacing[1]),
            channel,
            thickness=_thickness(ds),
        )
    ]


def _enhanced(index: FrameIndex) -> list[SliceRecord]:
    ds = index.header.dataset
    where = index.url
    n = index.header.description.number_of_frames
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != n:
        raise LayoutError(
            f"{where}: (5200,9230) Per-Frame Functional Groups has {len(per_frame)} items "
            f"for {n} frames"
        )
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else None
    pointers = [
        (int(item.DimensionIndexPointer), int(item.get("FunctionalGroupPointer", 0) or 0))
        for item in ds.get("DimensionIndexSequence") or []
    ]
    records = []
    for k, frame in enumerate(per_frame):

        def find(sequence: str, frame: Dataset = frame) -> Dataset | None:
            return _item(frame, sequence) or _item(shared_item, sequence)

        plane = find("PlanePositionSequence")
        orient = find("PlaneOrientationSequence")
        if plane is None or orient is None or "ImagePositionPatient" not in plane:
            raise LayoutError(
                f"{where}: frame {k + 1} has no Plane Position (Patient) / Plane Orientation "
                "(Patient) functional group: the frames cannot be placed in a volume"
            )
        label = f"{where}: frame {k + 1}"
        position = _floats(plane.ImagePositionPatient, 3, "Image Position (Patient)", label)
        orientation = _floats(orient.ImageOrientationPatient, 6, "Image Orientation", label)
        measures = find("PixelMeasuresSequence")
        spacing = _floats(
            measures.get("PixelSpacing", [1.0, 1.0]) if measures else [1.0, 1.0],
            2,
            "Pixel Spacing",
            label,
        )
        content = find("FrameContentSequence")
        raw_values = content.get("DimensionIndexValues") if content else None
        if raw_values is None or raw_values == "":
            values: list[Any] = []
        elif isinstance(raw_values, int | float):
            values = [raw_values]
        else:
            values = list(raw_values)
        channel: list[tuple[str, Any]] = []
        stack = ""
        if len(values) == len(pointers):
            for (pointer, _), value in zip(pointers, values, strict=True):
                if pointer == STACK_ID:
                    stack = str(value)
                elif pointer not in SPATIAL_POINTERS:
                    channel.append((keyword_for_tag(pointer) or f"{pointer:08X}", int(value)))
        elif content is not None:  # no usable Dimension Index: the Frame Content itself
            if content.get("StackID") not in (None, ""):
                stack = str(content.StackID)
            if content.get("TemporalPositionIndex") not in (None, ""):
                channel.append(("TemporalPositionIndex", int(content.TemporalPositionIndex)))
        records.append(
            SliceRecord(
                index,
                k,
                position,
                orientation,
                (spacing[0], spacing[1]),
                tuple(channel),
                stack,
                _thickness(measures) or _thickness(ds),
            )
        )
    return records


def slice_records(index: FrameIndex) -> list[SliceRecord]:
    """The slices of one file, each with its position, orientation and channel key."""
    ds = index.header.dataset
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced(index)
    return _single_frame(index)


@dataclass(frozen=True, eq=False)
class Stack:
    """Slices that form one volume: ``records[i]`` for channel key ``channels[j]``."""

    records: tuple[SliceRecord, ...]
    channel_names: tuple[str, ...]
    channel_values: tuple[tuple[Any, ...], ...]

    @property
    def key(self) -> dict[str, Any]:
        """What identifies the stack (series, stack ID, orientation)."""
        first = self.records[0]
        return {
            "series_instance_uid": first.series_uid,
            "stack": first.stack,
            "orientation": [round(v, _ROUND) for v in first.orientation],
        }

    def describe(self) -> dict[str, Any]:
        """A summary for [`list_series`][dicom_dask.images.volume.list_series]."""
        ds = self.records[0].index.header.dataset
        return {
            **self.key,
            "modality": str(ds.get("Modality", "")),
            "series_description": str(ds.get("SeriesDescription", "")),
            "files": len({r.url for r in self.records}),
            "frames": len(self.records),
            "channels": dict(zip(self.channel_names, self.channel_values, strict=True)),
            "shape": [
                len({tuple(np.round(r.position, 3)) for r in self.records}),
                ds.get("Rows"),
                ds.get("Columns"),
            ],
        }


def _split_channels(records: list[SliceRecord]) -> list[Stack]:
    """Channel dimensions that vary over a complete grid; split the rest into stacks."""
    names: list[str] = []
    for r in records:
        for name, _ in r.channel:
            if name not in names:
                names.append(name)
    values = {name: sorted({dict(r.channel).get(name) for r in records}, key=str) for name in names}
    varying = [name for name in names if len(values[name]) > 1]
    if not varying:
        return [Stack(tuple(records), (), ())]
    by_position: dict[tuple[Any, ...], int] = {}
    for r in records:
        key = tuple(np.round(r.position, 3))
        by_position[key] = by_position.get(key, 0) + 1
    expected = int(np.prod([len(values[name]) for name in varying]))
    if all(count == expected for count in by_position.values()):
        return [Stack(tuple(records), tuple(varying), tuple(tuple(values[n]) for n in varying))]
    # incomplete grid: one stack per value of the first varying dimension
    out: list[Stack] = []
    first = varying[0]
    for value in values[first]:
        part = [r for r in records if dict(r.channel).get(first) == value]
        trimmed = [
            SliceRecord(
                r.index,
                r.frame,
                r.position,
                r.orientation,
                r.pixel_spacing,
                tuple(c for c in r.channel if c[0] != first),
                f"{r.stack}{first}={value}".strip(),
            )
            for r in part
        ]
        out.extend(_split_channels(trimmed))
    return out


def group_stacks(records: Sequence[SliceRecord]) -> list[Stack]:
    """Group slices by series, stack ID and orientation, then by channel completeness."""
    groups: dict[tuple[Any, ...], list[SliceRecord]] = {}
    for r in records:
        key = (r.series_uid, r.stack, tuple(round(v, _ROUND) for v in r.orientation))
        groups.setdefault(key, []).append(r)
    stacks: list[Stack] = []
    for group in groups.values():
        stacks.extend(_split_channels(group))
    return stacks
