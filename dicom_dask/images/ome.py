"""OME-NGFF 0.5 metadata for a slide pyramid (pure builders; no I/O).

The slide is served as a zarr v3 group whose ``zarr.json`` carries the ``ome``
attributes (multiscales with physical scales from the pixel spacing, and omero
channels from the optical paths), so OME tools read it without a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["NGFF_VERSION", "NGFF_VERSION_V2", "NGFF_VERSIONS", "multiscales_attributes"]

#: The OME-NGFF version of zarr v3 groups (the slides' ``ome`` attributes; the
#: writers' default).
NGFF_VERSION = "0.5"
#: The OME-NGFF version of zarr v2 groups (the writers' ``ngff_version="0.4"``).
NGFF_VERSION_V2 = "0.4"
#: The OME-NGFF versions written, newest first.
NGFF_VERSIONS = (NGFF_VERSION, NGFF_VERSION_V2)

_COLORS = {
    "red": "FF0000",
    "green": "00FF00",
    "blue": "0000FF",
    "white": "FFFFFF",
    "brightfield illumination": "FFFFFF",
}


def _channel_color(description: str | None, sample: int | None) -> str:
    if sample is not None:
        return ("FF0000", "00FF00", "0000FF")[sample % 3]
    text = (description or "").lower()
    for key, value in _COLORS.items():
        if key in text:
            return value
    return "FFFFFF"


def multiscales_attributes(
    *,
    name: str,
    axes: Sequence[str],
    spacings: Sequence[tuple[float, float]],
    plane_spacing: float | None,
    channels: Sequence[dict[str, Any]],
    samples: int,
    dtype_max: float,
    photometric: str,
) -> dict[str, Any]:
    """The ``attributes`` of the slide group's ``zarr.json``.

    Parameters
    ----------
    axes : sequence of str
        ``("c", "y", "x")`` or ``("c", "z", "y", "x")``.
    spacings : sequence of (float, float)
        Row and column spacing of each level in mm (level 0 first).
    plane_spacing : float, optional
        Distance between focal planes in µm.
    channels : sequence of dict
        Channel descriptors (``identifier``, ``description``, ``color``...), one per
        optical path or segment.
    samples : int
        Samples per pixel: with 3, each optical path contributes R, G and B channels.
    """
    ome_axes: list[dict[str, Any]] = []
    for axis in axes:
        if axis == "c":
            ome_axes.append({"name": "c", "type": "channel"})
        else:
            ome_axes.append({"name": axis, "type": "space", "unit": "micrometer"})
    base_y, base_x = spacings[0]
    datasets = []
    for level, (dy, dx) in enumerate(spacings):
        scale: list[float] = []
        translation: list[float] = []
        for axis in axes:
            if axis == "c":
                scale.append(1.0)
                translation.append(0.0)
            elif axis == "z":
                scale.append(float(plane_spacing or 1.0))
                translation.append(0.0)
            elif axis == "y":
                scale.append(dy * 1000.0)
                translation.append((dy - base_y) * 500.0)  # keep pixel centres aligned
            else:
                scale.append(dx * 1000.0)
                translation.append((dx - base_x) * 500.0)
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if any(translation):
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    omero_channels = []
    for channel in channels:
        for s in range(samples):
            sample = s if samples > 1 else None
            label = channel["identifier"]
            if samples > 1:
                label = f"{label}:{'RGB'[s] if photometric == 'RGB' else s}"
            omero_channels.append(
                {
                    "label": label,
                    "color": _channel_color(
                        channel.get("color") or channel.get("description"), sample
                    ),
                    "active": True,
                    "window": {"min": 0.0, "max": dtype_max, "start": 0.0, "end": dtype_max},
                }
            )
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [{"name": name, "axes": ome_axes, "datasets": datasets}],
            "omero": {
                "channels": omero_channels,
                "rdefs": {"model": "color" if samples > 1 or len(channels) > 1 else "greyscale"},
            },
        }
    }
