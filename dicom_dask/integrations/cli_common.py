"""What the ``dicom-dask`` commands share: option parsing, opening a source as
[`open_source`][dicom_dask.images.sources.open_source] does, and the descriptions of
values and volumes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dicom_dask.enums import Kind
from dicom_dask.errors import DicomDaskError

__all__ = [
    "UsageError",
    "no_select",
    "open_as",
    "select_value",
    "storage_options",
    "values_info",
    "volume_info",
]


class UsageError(Exception):
    """A problem with the command line or the destination (exit status 1)."""


def storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"dicom-dask: --storage-option expects key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def select_value(text: str) -> int | str:
    """``--select``: an index (an integer) or a UID or label, as ``info`` lists them."""
    try:
        return int(text)
    except ValueError:
        return text


def open_as(
    url: str, options: dict[str, Any], as_: str | None = None, select: int | str | None = None
) -> tuple[Kind, Any]:
    """``(kind, object)``: the Slide, Volume or Frames ``url`` holds, as
    [`open_source`][dicom_dask.images.sources.open_source] opens it (``--as`` names the
    kind instead; with ``select``, that slide or series of a folder)."""
    from dicom_dask.images.sources import kind_of, open_source

    if select is not None and as_ is not None and Kind.coerce(as_) is Kind.FRAMES:
        no_select(url, select)
    opened = open_source(url, kind=as_, storage_options=options, select=select)
    return kind_of(opened), opened


def no_select(url: str, select: int | str | None) -> None:
    """Refuse ``--select`` for one image's frames (it picks a slide or series of a folder)."""
    if select is not None:
        raise UsageError(
            f"{url} is one image's frames: --select picks one slide or series of a folder"
        )


def values_info(source: Any) -> dict[str, Any]:
    """Rescale, units and VOI window of a Volume or Frames (empty if none applies)."""
    from dicom_dask.integrations.pixels import rescale_of, transformed_with, voi_limits

    try:
        _, transformer = transformed_with(source)
    except DicomDaskError:
        return {}
    applied = transformer.applied[0] if transformer.applied else {}
    if not str(applied.get("color", "")).endswith("MONOCHROME"):  # colour: only ICC applies
        return {"icc_profile": True} if applied.get("icc_profile") else {}
    rescale = rescale_of(transformer)
    out: dict[str, Any] = {}
    if not rescale.identity:
        pair = rescale.scale_offset
        out["rescale"] = (
            {"slope": pair[0], "intercept": pair[1]}
            if pair
            else ("per slice" if rescale.linear else "lookup table")
        )
    if rescale.units:
        out["units"] = rescale.units
    middle = int(len(transformer.frames) // 2)
    window = voi_limits(transformer, middle)
    if window is not None:
        out["window"] = [round(window[0], 3), round(window[1], 3)]
    return out


def volume_info(volume: Any) -> dict[str, Any]:
    return {
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "modality": volume.metadata.get("modality", ""),
        "spacing_mm": list(volume.spacing),
        "affine": volume.affine.round(6).tolist(),
        "frame_of_reference_uid": volume.frame_of_reference_uid,
        "series_instance_uid": volume.metadata.get("series_instance_uid", ""),
        "channels": {k: list(v) for k, v in volume.channels.items()},
        "geometry": volume.metadata["geometry"],
        "files": len(volume.metadata["urls"]),
    }
