"""Slides from tiled instances: which instances make one slide, and how a slide is described.

Instances are grouped into slides by Frame of Reference, Container Identifier and series;
levels of one series and container whose Frames of Reference differ but whose geometry
agrees are one slide, as OpenSlide opens them (with a warning). Used by
[`list_slides`][dicom_dask.images.slide.list_slides],
[`open_slide`][dicom_dask.images.slide.open_slide] and
[`catalog`][dicom_dask.integrations.catalog.catalog] alike.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dicom_dask.errors import LayoutWarning
from dicom_dask.frames.sizes import format_size
from dicom_dask.frames.values import fast_get
from dicom_dask.images.entries import Entry
from dicom_dask.images.tiled import LABEL_MAP_SEGMENTATION, SEGMENTATION, TiledImage

__all__ = [
    "ASSOCIATED",
    "DISTINGUISHING",
    "SlideGroup",
    "describe_group",
    "describe_slides",
    "differences",
    "group_slides",
    "set_apart",
    "slide_key",
]

#: Image Types (value 3) of associated images; the others are pyramid levels.
ASSOCIATED = ("LABEL", "OVERVIEW", "THUMBNAIL")

#: What tells slides apart, in the order the error messages name them.
DISTINGUISHING = {
    "frame_of_reference_uid": "Frame of Reference UID",
    "container_identifier": "Container Identifier",
    "series_instance_uid": "Series Instance UID",
    "optical_paths": "optical paths",
}


def slide_key(im: TiledImage) -> tuple[str, str, str]:
    """``(Frame of Reference UID, Container Identifier, Series Instance UID)`` of ``im``."""
    ds = im.dataset
    return (
        str(fast_get(ds, "FrameOfReferenceUID", "") or ""),
        str(ds.get("ContainerIdentifier", "") or ""),
        str(fast_get(ds, "SeriesInstanceUID", "") or ""),
    )


def extent(im: TiledImage) -> tuple[float, float] | None:
    """Height and width of the total pixel matrix in mm."""
    if im.pixel_spacing is None:
        return None
    return (im.matrix_shape[0] * im.pixel_spacing[0], im.matrix_shape[1] * im.pixel_spacing[1])


def geometry_difference(a: Sequence[TiledImage], b: Sequence[TiledImage]) -> str | None:
    """Why the pyramid levels ``a`` and ``b`` cannot be one slide's, or ``None``.

    They are one slide's when, as in a pyramid written level by level, every level
    has the same orientation and origin, covers the same area (matrix size times
    pixel spacing, to one pixel of the coarser level), and no level (matrix size,
    optical path and focal plane) is in both.
    """
    for x in a:
        for y in b:
            where = f"{x.url} and {y.url}"
            if np.abs(np.subtract(x.orientation, y.orientation)).max() > 1e-4:
                return f"{where} have orientations {list(x.orientation)} and {list(y.orientation)}"
            ex, ey = extent(x), extent(y)
            if ex is None or ey is None or x.pixel_spacing is None or y.pixel_spacing is None:
                return f"{where}: a pixel spacing is unknown"
            tol = max(*x.pixel_spacing, *y.pixel_spacing) * 1.01
            if np.abs(np.subtract(x.origin, y.origin)).max() > tol:
                return f"{where} have origins {list(x.origin)} and {list(y.origin)} mm"
            if np.abs(np.subtract(ex, ey)).max() > tol:
                return (
                    f"{where} cover {ex[0]:.6g} x {ex[1]:.6g} and {ey[0]:.6g} x {ey[1]:.6g} mm "
                    "(matrix size x pixel spacing)"
                )
            same_paths = {c.identifier for c in x.channels} & {c.identifier for c in y.channels}
            same_planes = set(x.focal_planes) & set(y.focal_planes)
            if x.matrix_shape == y.matrix_shape and same_paths and same_planes:
                return f"{where} are both the {format_size(*x.matrix_shape[::-1])} level"
    return None


@dataclass
class SlideGroup:
    """Instances of one slide, and what was merged or kept apart on the way."""

    images: list[TiledImage]
    #: Frames of Reference merged into this slide (empty when only one).
    merged: list[str] = field(default_factory=list)
    #: Why a group of the same series and container was kept apart.
    apart: list[str] = field(default_factory=list)

    def volumes(self) -> list[TiledImage]:
        return [im for im in self.images if im.image_type not in ASSOCIATED]

    def values(self, key: int) -> set[str]:
        return {slide_key(im)[key] for im in self.images} - {""}


def merge_frames_of_reference(groups: list[SlideGroup]) -> list[SlideGroup]:
    """Join groups of one series and container whose levels agree in geometry.

    Converters that write a pyramid level by level sometimes give each level its own
    Frame of Reference UID. OpenSlide groups instances by Series Instance UID alone;
    here the levels must also agree in geometry (see ``_geometry_difference``).
    """
    buckets: dict[tuple[str, str], list[SlideGroup]] = {}
    for g in groups:
        _, container, series = slide_key(g.images[0])
        buckets.setdefault((series, container), []).append(g)
    out: list[SlideGroup] = []
    for (series, container), bucket in buckets.items():
        if len(bucket) == 1:
            out.extend(bucket)
            continue
        # largest level first: the others join it when their geometry agrees
        bucket.sort(key=lambda g: -max(im.matrix_shape[1] for im in g.volumes()))
        joined: list[SlideGroup] = []
        for g in bucket:
            reasons = []
            for host in joined:
                reason = geometry_difference(host.volumes(), g.volumes())
                if reason is None:
                    host.images.extend(g.images)
                    break
                reasons.append(reason)
            else:
                g.apart.extend(reasons)
                joined.append(g)
        for g in joined:
            uids = sorted(g.values(0))
            if len(uids) > 1:
                g.merged = uids
                warnings.warn(
                    f"series {series} (container {container!r}): {len(g.volumes())} pyramid "
                    f"levels with {len(uids)} different Frame of Reference UIDs "
                    f"({', '.join(uids[:4])}{', ...' if len(uids) > 4 else ''}) agree in "
                    "orientation, origin and extent: opened as one slide, as OpenSlide does",
                    LayoutWarning,
                    stacklevel=4,
                )
        out.extend(joined)
    return out


def group_slides(images: Sequence[TiledImage]) -> list[SlideGroup]:
    """Instances per slide: same Frame of Reference, Container Identifier and series.

    Groups of one series and container whose Frames of Reference differ but whose
    levels agree in geometry are one slide (with a
    [`LayoutWarning`][dicom_dask.errors.LayoutWarning]). Associated images filed in
    a series of their own join the slide with the same Frame of Reference or
    Container Identifier, when there is exactly one.
    """
    groups: dict[tuple[str, str, str], list[TiledImage]] = {}
    for im in images:
        groups.setdefault(slide_key(im), []).append(im)
    with_levels = [
        SlideGroup(g) for g in groups.values() if any(i.image_type not in ASSOCIATED for i in g)
    ]
    out = merge_frames_of_reference(with_levels)
    hosts_of = list(out)
    for key, group in groups.items():
        if any(i.image_type not in ASSOCIATED for i in group):
            continue
        hosts = [
            g
            for g in hosts_of
            if (key[0] and key[0] in g.values(0)) or (key[1] and key[1] in g.values(1))
        ]
        if len(hosts) == 1:
            hosts[0].images.extend(group)
        else:
            out.append(SlideGroup(group))
    return out


def describe_group(group: SlideGroup) -> dict[str, Any]:
    first = group.images[0]
    ds = first.dataset
    paths = sorted({c.identifier for im in group.volumes() or group.images for c in im.channels})
    return {
        "series_instance_uid": str(fast_get(ds, "SeriesInstanceUID", "")),
        "frame_of_reference_uid": str(fast_get(ds, "FrameOfReferenceUID", "")),
        "container_identifier": str(ds.get("ContainerIdentifier", "")),
        "sop_class_uid": str(fast_get(ds, "SOPClassUID", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "optical_paths": paths,
        "frame_of_reference_uids": sorted(group.values(0)),
        "merged_frames_of_reference": list(group.merged),
        "kept_apart_because": list(group.apart),
        "instances": [
            {
                "url": im.url,
                "image_type": im.image_type,
                "matrix": list(im.matrix_shape),
                "frame_of_reference_uid": slide_key(im)[0],
            }
            for im in group.images
        ],
    }


def set_apart(described: list[dict[str, Any]]) -> None:
    """Add to each description what tells it from the other slides (``differs_by``)."""
    for field_name in DISTINGUISHING:
        values = [json.dumps(d[field_name]) for d in described]
        if len(set(values)) > 1:
            for d in described:
                d.setdefault("differs_by", {})[field_name] = d[field_name]
    for d in described:
        d.setdefault("differs_by", {})


def differences(described: list[dict[str, Any]]) -> str:
    """The fields whose values differ between the slides, for an error message."""
    parts = []
    for field_name, label in DISTINGUISHING.items():
        values = list(dict.fromkeys(json.dumps(d[field_name]) for d in described))
        if len(values) > 1:
            shown = " | ".join(v.strip('"') for v in values[:4]) + (
                " | ..." if len(values) > 4 else ""
            )
            parts.append(f"{label} ({shown})")
    apart = [reason for d in described for reason in d["kept_apart_because"]]
    text = "they differ in " + ", ".join(parts) if parts else "they differ in nothing compared"
    if apart:
        text += "; same series and container kept apart because " + "; ".join(apart[:3])
    return text


def slide_kind(group: SlideGroup) -> str:
    sops = {str(fast_get(im.dataset, "SOPClassUID", "")) for im in group.images}
    if sops & {SEGMENTATION, LABEL_MAP_SEGMENTATION}:
        return "segmentation"
    if group.volumes():
        return "slide"
    return group.images[0].image_type.lower()


def describe_slides(images: Sequence[TiledImage]) -> list[Entry]:
    """The slides already-parsed tiled instances make up, grouped as
    [`list_slides`][dicom_dask.images.slide.list_slides] and
    [`open_slide`][dicom_dask.images.slide.open_slide] group them, one
    [`Entry`][dicom_dask.images.entries.Entry] each (its ``parts`` are the instances)."""
    groups = group_slides(images)
    described = [describe_group(g) for g in groups]
    set_apart(described)
    out = []
    for group, d in zip(groups, described, strict=True):
        level0 = max(group.volumes() or group.images, key=lambda im: im.matrix_shape)
        shape = [*level0.matrix_shape] + ([level0.samples] if level0.samples > 1 else [])
        d.update(
            kind=slide_kind(group),
            modality=str(fast_get(level0.dataset, "Modality", "") or ""),
            shape=shape,
            files=len({im.url for im in group.images}),
            urls=sorted({im.url for im in group.images}),
        )
        out.append(Entry(d, group.images))
    return out
