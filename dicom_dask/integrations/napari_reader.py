"""napari reader (npe2): a slide opens as a multiscale layer, a series as a 3-D layer.

Only builds layer data from the lazy arrays; napari reads the tiles or slices it
displays, level by level. Optical paths become channels (``channel_axis``), focal
planes a slider; a volume carries its affine, so it lands at its place in LPS mm.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["get_reader", "read"]

LayerData = tuple[Any, dict[str, Any], str]


def _kind(path: str) -> str | None:
    from dicom_dask.images.sources import classify

    if os.path.isdir(path):
        return "folder"
    if not path.lower().endswith((".dcm", ".dicom")):
        return None
    try:
        kind, _ = classify(path)
    except Exception:  # not a file we read: let napari try other readers
        return None
    return "slide" if kind == "slide" else "volume"


def _slide_layers(slide: Any) -> list[LayerData]:
    level0 = slide.pyramid[0]
    arrays = [level.array for level in slide.pyramid]
    meta: dict[str, Any] = {
        "name": str(level0.image.dataset.get("ContainerIdentifier", "") or "slide"),
        "multiscale": True,
        "metadata": {"downsamples": slide.downsamples, "urls": list(level0.urls)},
    }
    if level0.pixel_spacing:
        meta["scale"] = tuple(level0.pixel_spacing)  # mm per pixel of level 0
        meta["units"] = ("mm", "mm")
    if not level0.squeezed:  # (c, z, y, x[, s]): channels split, planes on a slider
        meta["channel_axis"] = 0
        meta["name"] = [ch.identifier for ch in level0.channels]
        if "scale" in meta:
            meta["scale"] = (1.0, *meta["scale"])
            meta["units"] = ("um", "mm", "mm")
    meta["rgb"] = level0.samples == 3
    return [(arrays, meta, "image")]


def _volume_layers(volume: Any) -> list[LayerData]:
    meta: dict[str, Any] = {
        "name": str(volume.metadata.get("modality") or "volume"),
        "affine": volume.affine,
        "units": ("mm", "mm", "mm"),
        "metadata": {
            "frame_of_reference_uid": volume.frame_of_reference_uid,
            "geometry": volume.metadata.get("geometry"),
        },
        "rgb": volume.array.ndim == 4 and volume.array.shape[-1] == 3 and not volume.channels,
    }
    if volume.channels:
        meta["channel_axis"] = 3
        (name, values), *_ = volume.channels.items()
        meta["name"] = [f"{name}={v}" for v in values]
        meta["affine"] = volume.affine
    return [(volume.array, meta, "image")]


def read(path: str | list[str]) -> list[LayerData]:
    """Layer data for ``path``: a slide (file or folder) or a volume (folder or file)."""
    from dicom_dask.errors import DicomDaskError
    from dicom_dask.images.slide import open_slide
    from dicom_dask.images.volume import open_volume

    target = path[0] if isinstance(path, list) and len(path) == 1 else path
    if isinstance(target, list):
        return _volume_layers(open_volume(target))
    kind = _kind(target)
    if kind == "slide":
        return _slide_layers(open_slide(target))
    if kind == "folder":
        try:
            return _slide_layers(open_slide(target))
        except DicomDaskError:
            pass
    return _volume_layers(open_volume(target))


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 ``reader`` contribution: `read` when ``path`` is DICOM we can open."""
    if isinstance(path, list):
        return read if all(str(p).lower().endswith((".dcm", ".dicom")) for p in path) else None
    return read if _kind(str(path)) is not None else None
