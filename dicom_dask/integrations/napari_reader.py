"""napari reader (npe2): a slide opens as a multiscale layer, a volume as a 3-D layer,
an image's frames as a stack.

What a source is follows [`source_kind`][dicom_dask.images.sources.source_kind], the rule
every front end shares (each layer's ``metadata["kind"]`` says which it was).

Only builds layer data from the lazy arrays; napari reads the tiles or slices it
displays, level by level. Optical paths become channels (``channel_axis``), focal
planes a slider; a volume carries its affine, so it lands at its place in patient mm (world
axes L, P, S ordered like the array's axes, so that napari's 2-D view slices it).

What napari would otherwise compute by reading pixels is given up front:

* contrast limits: the VOI window of the header (Window Center / Width, as highdicom
  resolves it, per-frame groups included) of the middle slice, else the range Bits
  Stored allows; uint8 colour slides get ``(0, 255)``. napari computes limits from the
  data only when none are given.
* values: when the modality rescale is not the identity (CT in Hounsfield units, PET,
  MR with a rescale slope), the layer shows the rescaled values
  (``Volume.transformed()``, float32) and its ``metadata["rescale"]`` says so.
* a slide's levels are ordered from level 0 (largest) to the smallest, as napari wants;
  napari reads the smallest level whole for its thumbnail, so a slide whose smallest
  pyramid level is large (more than ``THUMBNAIL_EDGE`` pixels on a side) gets its
  THUMBNAIL image, when it has one, as an extra lowest level.

With ``napari.Viewer()`` (or the ``napari`` command) the plugin is found through its
``napari.manifest`` entry point. A headless ``ViewerModel`` (no Qt) does not discover
plugins by itself: call npe2's ``PluginManager.instance().discover()`` first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["get_reader", "read"]

LayerData = tuple[Any, dict[str, Any], str]

#: Longest side (pixels) of a smallest level that napari may read whole for its thumbnail.
THUMBNAIL_EDGE = 4096


def _readable(path: str) -> bool:
    """Whether ``path`` is a folder, or a DICOM file we open (by its header)."""
    from dicom_dask.images.sources import source_kind

    if os.path.isdir(path):
        return True
    if not path.lower().endswith((".dcm", ".dicom")):
        return False
    try:
        source_kind(path)
    except Exception:  # not a file we read: let napari try other readers
        return False
    return True


def _slide_limits(level: Any) -> tuple[float, float]:
    import numpy as np

    from dicom_dask.integrations.pixels import stored_range

    if np.dtype(level.dtype) == np.uint8:
        return 0.0, 255.0
    return stored_range(level.image.dataset)


def _slide_layers(slide: Any) -> list[LayerData]:
    from dataclasses import replace

    level0 = slide.pyramid[0]
    levels = list(slide.pyramid)
    smallest = levels[-1]
    extra = slide.associated.get("thumbnail")
    if (
        max(smallest.matrix_shape) > THUMBNAIL_EDGE
        and extra is not None
        and extra.squeezed == smallest.squeezed
        and extra.samples == smallest.samples
        and max(extra.matrix_shape) < max(smallest.matrix_shape)
    ):
        levels.append(extra)
    # one dask chunk per tile: napari widens what it shows to whole chunks, so a
    # zoomed-in view reads only the tiles under it
    arrays = [replace(level, chunk_edge=1).array for level in levels]
    meta: dict[str, Any] = {
        "name": str(level0.image.dataset.get("ContainerIdentifier", "") or "slide"),
        "multiscale": True,
        "contrast_limits": _slide_limits(level0),
        "metadata": {
            "kind": "slide",
            "downsamples": slide.downsamples,
            "urls": list(level0.urls),
            "thumbnail_level": len(levels) > len(slide.pyramid),
        },
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


def _volume_values(volume: Any) -> tuple[Any, dict[str, Any], tuple[float, float] | None]:
    """The array to show (rescaled when the modality asks for it), what was done, and
    the contrast limits in its values."""
    from dicom_dask.errors import DicomDaskError
    from dicom_dask.integrations.pixels import (
        rescale_of,
        stored_range,
        transformed_with,
        voi_limits,
    )

    if volume.array.ndim == 4 and volume.array.shape[-1] == 3 and not volume.channels:
        return volume.array, {}, None  # colour: napari shows it as RGB
    try:
        out, transformer = transformed_with(volume)
    except DicomDaskError:
        return volume.array, {}, None
    rescale = rescale_of(transformer)
    middle = volume.spatial_shape[0] // 2
    window = voi_limits(transformer, middle)
    position = transformer.frames[middle].reshape(-1, 2)[0]
    low, high = stored_range(transformer.datasets[max(int(position[0]), 0)])
    if rescale.identity or not rescale.linear or not rescale.monochrome:
        return volume.array, {}, window or (low, high)
    slope, intercept = rescale.slope.reshape(-1), rescale.intercept.reshape(-1)
    k = middle * max(1, slope.size // max(volume.spatial_shape[0], 1))
    ends = sorted((low * slope[k] + intercept[k], high * slope[k] + intercept[k]))
    info: dict[str, Any] = {"rescale": {"slope": float(slope[k]), "intercept": float(intercept[k])}}
    if rescale.units:
        info["rescale"]["units"] = rescale.units
    return out.array, info, window or (float(ends[0]), float(ends[1]))


def world_axes(affine: Any) -> tuple[Any, tuple[str, str, str]]:
    """The volume's affine with its patient axes ordered like the array's axes.

    napari slices data and world with the same axis numbers: the plane shown in 2-D is
    that of the last two world axes, so an axial (slice, row, column) array must map to
    world axes ordered (S, P, L), not (L, P, S) (whose displayed 2 x 2 block would be
    singular). Each array axis gets the patient axis it moves along most; the rows of
    the affine are permuted accordingly, which keeps the map exact.

    Returns
    -------
    tuple
        The 4 x 4 affine onto the reordered world axes, and their names (``"L"``, ``"P"``,
        ``"S"`` in the new order).
    """
    import itertools

    import numpy as np

    matrix = np.asarray(affine, dtype=float)
    weights = np.abs(matrix[:3, :3])
    # the permutation of patient axes with the largest diagonal (ties: LPS order kept)
    best = max(
        itertools.permutations(range(3)),
        key=lambda perm: sum(weights[perm[i], i] for i in range(3)),
    )
    order = [*best, 3]
    names = ("L", "P", "S")
    return matrix[order], (names[best[0]], names[best[1]], names[best[2]])


def _volume_layers(volume: Any) -> list[LayerData]:
    array, values, limits = _volume_values(volume)
    affine, axes = world_axes(volume.affine)
    meta: dict[str, Any] = {
        "name": str(volume.metadata.get("modality") or "volume"),
        "affine": affine,
        "units": ("mm", "mm", "mm"),
        "metadata": {
            "kind": "volume",
            "frame_of_reference_uid": volume.frame_of_reference_uid,
            "affine_lps": volume.affine,
            "world_axes": axes,
            "geometry": volume.metadata.get("geometry"),
            **values,
        },
        "rgb": volume.array.ndim == 4 and volume.array.shape[-1] == 3 and not volume.channels,
    }
    if limits is not None and limits[1] > limits[0]:
        meta["contrast_limits"] = limits
    if volume.channels:
        meta["channel_axis"] = 3
        (name, channel_values), *_ = volume.channels.items()
        meta["name"] = [f"{name}={v}" for v in channel_values]
    return [(array, meta, "image")]


def _frames_layers(frames: Any) -> list[LayerData]:
    """One image's frames (a cine, a secondary capture) as a stack on a slider."""
    import numpy as np

    from dicom_dask.integrations.pixels import stored_range

    ds = frames.index.header.dataset
    rgb = len(frames.shape) == 4 and frames.shape[-1] in (3, 4)
    meta: dict[str, Any] = {
        "name": str(ds.get("Modality", "") or "frames"),
        "rgb": rgb,
        "metadata": {"kind": "frames", "url": frames.url},
    }
    if not rgb and np.dtype(frames.dtype).kind in "iu":  # napari would read every frame
        meta["contrast_limits"] = stored_range(ds)
    return [(frames.array, meta, "image")]


def read(path: str | list[str]) -> list[LayerData]:
    """Layer data for ``path``: a slide (file, folder or files), a volume (series folder
    or files, enhanced file, one CT/MR slice) or an image's frames, as
    [`open_source`][dicom_dask.images.sources.open_source] opens it."""
    from dicom_dask.enums import Kind
    from dicom_dask.images.sources import kind_of, open_source

    target = path[0] if isinstance(path, list) and len(path) == 1 else path
    opened = open_source(target)
    kind = kind_of(opened)
    if kind is Kind.SLIDE:
        return _slide_layers(opened)
    if kind is Kind.VOLUME:
        return _volume_layers(opened)
    return _frames_layers(opened)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 ``reader`` contribution: [`read`][dicom_dask.integrations.napari_reader.read]
    when ``path`` is DICOM we can open."""
    if isinstance(path, list):
        return read if all(str(p).lower().endswith((".dcm", ".dicom")) for p in path) else None
    return read if _readable(str(path)) else None
