"""Volumes: single-frame series and multi-frame images -> slices with positions.

Every frame that holds a slice becomes a `SliceRecord` (file, frame number,
Image Position/Orientation (Patient), pixel spacing, and a *channel key* for the
dimensions that are not spatial: temporal position, echo, segment, b-value...).
Records are grouped into stacks (series, orientation, stack ID, and whatever
channel dimension does not fill a complete grid), then sorted in space by
[`dicom_dask.images.geometry`][dicom_dask.images.geometry]. Nothing here imports dask.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError, LayoutWarning
from dicom_dask.frames import FrameIndex
from dicom_dask.frames.values import fast_get
from dicom_dask.images.diffusion import ImageFacts, image_facts

__all__ = [
    "SliceRecord",
    "Stack",
    "StackKey",
    "group_stacks",
    "record_facts",
    "slice_records",
    "stack_differences",
]

#: Dimension index pointers that locate a frame in space (not channel dimensions).
SPATIAL_POINTERS = {0x00200032, 0x00209057}
#: Dimension index pointers of diffusion: the volumes they tell apart are found from
#: the frames' MR Diffusion values (a b=0 volume has no direction: no complete grid).
DIFFUSION_POINTERS = {0x00189087, 0x00189089, 0x00189075, 0x00189076}
#: Private Dimension Index pointers (odd groups, e.g. Philips (2005,1011)) are not
#: channel dimensions either: frames they tell apart are told apart by their complex
#: component, diffusion values or time (see ``_volumes``).
#: Channel dimensions added for several volumes at the same slice positions.
IMAGE_TYPE, GRADIENT, TEMPORAL = "image_type", "gradient", "temporal_position"
REPEAT_DIMENSIONS = (GRADIENT, TEMPORAL)
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
    #: Complex component, diffusion and acquisition time: read only for images that
    #: share a position (see ``record_facts``), empty otherwise.
    facts: ImageFacts = field(default_factory=ImageFacts)
    #: ``(Acquisition Number, Instance Number)``: the order of images with no time.
    number: tuple[int, int] = (0, 0)

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


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


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
        return groups[sequence][0]
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
    number = (_int(fast_get(ds, "AcquisitionNumber")), _int(fast_get(ds, "InstanceNumber")))
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
            number=number,
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
                elif pointer not in SPATIAL_POINTERS | DIFFUSION_POINTERS and not (
                    (pointer >> 16) % 2  # a private dimension: what it means is unknown
                ):
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
                ImageFacts(),
                (0, k + 1),
            )
        )
    return records


def record_facts(record: SliceRecord) -> ImageFacts:
    """The complex component, diffusion values and acquisition time of one slice,
    from its file's header (and its frame's functional groups)."""
    ds = record.index.header.dataset
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return image_facts(ds)
    shared = ds.get("SharedFunctionalGroupsSequence")
    return image_facts(ds, per_frame[record.frame], shared[0] if shared else None)


def slice_records(index: FrameIndex) -> list[SliceRecord]:
    """The slices of one file, each with its position, orientation and channel key."""
    ds = index.header.dataset
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced(index)
    return _single_frame(index)


def _value_order(value: Any) -> tuple[int, float, str]:
    """Numbers (also as text) in numeric order, then text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _position_key(r: SliceRecord) -> tuple[float, ...]:
    return tuple(np.round(r.position, 3))


class StackKey(TypedDict):
    """What identifies a [`Stack`][dicom_dask.images.series.Stack] among the stacks of a source."""

    #: Series Instance UID of its files.
    series_instance_uid: str
    #: Stack ID, or the volume dimension whose repeats are irregular (``""`` if none).
    stack: str
    #: Image Orientation (Patient), rounded to 4 decimals.
    orientation: list[float]


@dataclass(frozen=True, eq=False)
class Stack:
    """Slices that form one volume: ``records[i]`` for channel key ``channels[j]``."""

    records: tuple[SliceRecord, ...]
    channel_names: tuple[str, ...]
    channel_values: tuple[tuple[Any, ...], ...]

    @property
    def key(self) -> StackKey:
        """What identifies the stack (series, stack ID, orientation)."""
        first = self.records[0]
        return {
            "series_instance_uid": first.series_uid,
            "stack": first.stack,
            "orientation": [round(v, _ROUND) for v in first.orientation],
        }

    @property
    def coordinates(self) -> dict[str, tuple[str, list[Any]]]:
        """Values along the volume dimensions (``gradient``, ``temporal_position``):
        ``{name: (dimension, values)}`` with ``b_value`` (s/mm²), ``gradient_direction``
        (3 numbers, NaN when none), ``acquisition_time`` (s, NaN when unknown)."""
        out: dict[str, tuple[str, list[Any]]] = {}
        for name, values in zip(self.channel_names, self.channel_values, strict=True):
            if name not in REPEAT_DIMENSIONS:
                continue
            per: dict[Any, list[SliceRecord]] = {v: [] for v in values}
            for r in self.records:
                value = dict(r.channel).get(name)
                if value in per:
                    per[value].append(r)
            groups = [per[v] for v in values]
            if name == GRADIENT:
                out["b_value"] = (
                    name,
                    [next((r.facts.b_value for r in g if r.facts.b_value is not None), None)
                     for g in groups],
                )  # fmt: skip
                out["gradient_direction"] = (
                    name,
                    [
                        list(next((r.facts.gradient for r in g if r.facts.gradient), (np.nan,) * 3))
                        for g in groups
                    ],
                )
            times = [[r.facts.time for r in g if r.facts.time is not None] for g in groups]
            out["acquisition_time"] = (name, [min(t) if t else float("nan") for t in times])
        return out

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
            "coordinates": {k: v for k, (_, v) in self.coordinates.items()},
            "shape": [
                len({_position_key(r) for r in self.records}),
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
    values = {
        name: sorted({dict(r.channel).get(name) for r in records}, key=_value_order)
        for name in names
    }
    varying = [name for name in names if len(values[name]) > 1]
    if not varying:
        return [Stack(tuple(records), (), ())]
    by_position: dict[tuple[Any, ...], set[tuple[Any, ...]]] = {}
    for r in records:
        combo = tuple(dict(r.channel).get(n) for n in varying)
        by_position.setdefault(_position_key(r), set()).add(combo)
    expected = int(np.prod([len(values[name]) for name in varying]))
    if all(len(combos) == expected for combos in by_position.values()):
        return [Stack(tuple(records), tuple(varying), tuple(tuple(values[n]) for n in varying))]
    # incomplete grid: one stack per value of the first varying dimension
    out: list[Stack] = []
    first = varying[0]
    for value in values[first]:
        part = [r for r in records if dict(r.channel).get(first) == value]
        trimmed = [
            replace(
                r,
                channel=tuple(c for c in r.channel if c[0] != first),
                stack=f"{r.stack} {first}={value}".strip(),
            )
            for r in part
        ]
        out.extend(_split_channels(trimmed))
    return out


def _duplicated(records: Sequence[SliceRecord]) -> bool:
    seen: set[tuple[Any, ...]] = set()
    for r in records:
        key = (_position_key(r), r.channel)
        if key in seen:
            return True
        seen.add(key)
    return False


def _with_channel(
    records: Sequence[SliceRecord], name: str, values: Sequence[Any]
) -> list[SliceRecord]:
    return [
        replace(r, channel=(*r.channel, (name, v))) for r, v in zip(records, values, strict=True)
    ]


def _volumes(records: list[SliceRecord]) -> list[SliceRecord]:
    """Give images at the same position (and channel) a dimension that tells them apart.

    First the complex component (``image_type``: magnitude, phase, real, imaginary, or
    the Image Type), then the volume each image belongs to, as dcm2niix sorts them:
    ``gradient`` when some b-value is above 0 (a volume per b-value and direction,
    repeated b=0 volumes told apart by time), else ``temporal_position``.
    At each position the images are ordered by acquisition time, then Acquisition
    Number, then Instance (or frame) Number; the k-th of a kind is volume k. Volumes
    are numbered in order of their first acquisition.
    """
    if not _duplicated(records):
        return records
    records = [replace(r, facts=record_facts(r)) for r in records]  # read only when needed
    kinds = [r.facts.image_type for r in records]
    if len(set(kinds)) > 1:
        records = _with_channel(records, IMAGE_TYPE, kinds)
        if not _duplicated(records):
            return records
    # diffusion-weighted: some b-value above 0 (GE writes b=0 in every fMRI image)
    diffusion = any(r.facts.b_value for r in records)
    name = GRADIENT if diffusion else TEMPORAL

    def when(r: SliceRecord) -> tuple[float, int, int]:
        time = r.facts.time
        return (time if time is not None else float("inf"), r.number[0], r.number[1])

    def kind(r: SliceRecord) -> tuple[Any, ...]:
        if not diffusion:
            return ()
        b = None if r.facts.b_value is None else round(r.facts.b_value, 3)
        g = None if r.facts.gradient is None else tuple(np.round(r.facts.gradient, 4))
        return (b, g)

    buckets: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(records):
        buckets.setdefault((_position_key(r), r.channel, kind(r)), []).append(i)
    identity: list[tuple[Any, ...]] = [()] * len(records)
    for members in buckets.values():
        members.sort(key=lambda i: when(records[i]))
        for ordinal, i in enumerate(members):
            identity[i] = (*kind(records[i]), ordinal)
    first_seen: dict[tuple[Any, ...], tuple[float, int, int]] = {}
    for i, r in enumerate(records):
        w = when(r)
        if identity[i] not in first_seen or w < first_seen[identity[i]]:
            first_seen[identity[i]] = w
    order = sorted(first_seen, key=lambda v: (first_seen[v], str(v)))
    number = {v: k for k, v in enumerate(order)}
    return _with_channel(records, name, [number[v] for v in identity])


def group_stacks(records: Sequence[SliceRecord]) -> list[Stack]:
    """Group slices by series, stack ID and orientation; tell apart the volumes at the
    same positions; then split by channel completeness."""
    groups: dict[tuple[Any, ...], list[SliceRecord]] = {}
    seen: dict[tuple[str, int], str] = {}
    copies: list[str] = []
    for r in records:
        sop = str(fast_get(r.index.header.dataset, "SOPInstanceUID", "") or "")
        if sop:  # the same instance twice (a copied file) is not another volume
            first = seen.setdefault((sop, r.frame), r.url)
            if first != r.url:
                copies.append(f"{r.url} (a copy of {first})")
                continue
        key = (r.series_uid, r.stack, tuple(round(v, _ROUND) for v in r.orientation))
        groups.setdefault(key, []).append(r)
    if copies:
        warnings.warn(
            f"{len(copies)} file(s) repeat an instance already read (same SOP Instance UID) "
            f"and are left out: {', '.join(copies[:3])}{', ...' if len(copies) > 3 else ''}",
            LayoutWarning,
            stacklevel=3,
        )
    stacks: list[Stack] = []
    for group in groups.values():
        stacks.extend(_split_channels(_volumes(group)))
    return stacks


def stack_differences(described: Sequence[Mapping[str, Any]]) -> str:
    """What differs between stacks (their ``describe()``), for the several-stacks error."""
    labels = {
        "series_instance_uid": "Series Instance UID",
        "stack": "stack (Stack ID, or the volume dimension whose repeats are irregular)",
        "orientation": "orientation",
        "shape": "shape",
    }
    parts = []
    for key, label in labels.items():
        values = list(dict.fromkeys(repr(d[key]) for d in described))
        if len(values) > 1:
            shown = " | ".join(v.strip("'") for v in values[:4])
            parts.append(f"{label}: {shown}{' | ...' if len(values) > 4 else ''}")
    return "they differ in " + "; ".join(parts) if parts else "they differ in nothing compared"
