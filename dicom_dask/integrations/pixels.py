"""What stored pixel values mean, for the front ends: the modality rescale as one slope
and intercept when it is one (CF's ``scale_factor`` / ``add_offset``), the VOI window
as display limits, and the Bits Stored range.

Everything is read from highdicom's own pixel transform of each frame (the one
``transformed()`` applies), so the slope, intercept and window are highdicom's,
per-frame functional groups included. Nothing here reads pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dicom_dask.compat import combined_pixel_transform, pixel_transform_parameters

__all__ = ["Rescale", "rescale_of", "stored_range", "transformed_with", "voi_limits"]


@dataclass(frozen=True)
class Rescale:
    """The stored-to-output mapping of an array's frames.

    Attributes
    ----------
    slope, intercept : numpy.ndarray
        Per frame position (the shape of the transformer's frame table without its
        last axis; NaN where no frame exists), the effective linear rescale.
    linear : bool
        Whether the whole chain is ``stored * slope + intercept`` (no lookup table,
        palette, inversion or ICC profile).
    units : str
        Rescale Type (e.g. ``"HU"``) of the first frame, ``""`` when absent or ``"US"``
        (unspecified).
    monochrome : bool
        Whether the frames are greyscale (colour and palette images have no rescale: the
        front ends show their stored values).
    """

    slope: np.ndarray
    intercept: np.ndarray
    linear: bool
    units: str = ""
    monochrome: bool = True

    @property
    def uniform(self) -> bool:
        """Whether one slope and one intercept hold for every frame."""
        s = self.slope[~np.isnan(self.slope)]
        i = self.intercept[~np.isnan(self.intercept)]
        return bool(s.size and np.all(s == s[0]) and np.all(i == i[0]))

    @property
    def identity(self) -> bool:
        """Whether the chain leaves values unchanged (slope 1, intercept 0)."""
        s = self.slope[~np.isnan(self.slope)]
        i = self.intercept[~np.isnan(self.intercept)]
        return self.linear and bool(np.all(s == 1.0) and np.all(i == 0.0))

    @property
    def scale_offset(self) -> tuple[float, float] | None:
        """``(scale_factor, add_offset)`` when the chain is one linear rescale, else None."""
        if not (self.linear and self.uniform):
            return None
        s = self.slope[~np.isnan(self.slope)]
        i = self.intercept[~np.isnan(self.intercept)]
        return float(s[0]), float(i[0])


def transformed_with(obj: Any, **switches: Any) -> tuple[Any, Any]:
    """``obj.transformed(**switches)`` for a Volume or Frames, and the
    ``FrameTransformer`` behind it (its datasets, frame table and built transforms)."""
    out = obj.transformed(**switches)
    transformer = getattr(out, "transform", None)  # Frames, Level
    if transformer is None:
        transformer = getattr(getattr(out, "reader", None), "transformer", None)  # Volume
    if transformer is None:  # a derived Volume: the same chain over its source frames
        from dicom_dask.images.transforms import FrameTransformer, TransformOptions

        datasets, frames = obj.sources[0], obj.sources[1]
        transformer = FrameTransformer(datasets, frames, TransformOptions.coerce(**switches))
    return out, transformer


def _linear(transform: Any) -> bool:
    p = pixel_transform_parameters(getattr(transform, "source", transform))
    return (
        not p.has_lut
        and p.window_center_width is None
        and not p.invert
        and p.color_manager is None
        and p.color_type.endswith("MONOCHROME")
    )


def rescale_of(transformer: Any) -> Rescale:
    """The rescale of every frame the transformer covers.

    See [`Rescale`][dicom_dask.integrations.pixels.Rescale].
    """
    table = np.asarray(transformer.frames).reshape(-1, 2)
    slope = np.full(len(table), np.nan)
    intercept = np.full(len(table), np.nan)
    linear = True
    seen: dict[tuple[int, int], tuple[float, float]] = {}
    for k, (d, f) in enumerate(table.tolist()):
        if d < 0:
            continue
        transform = transformer.get(d, f)
        params = pixel_transform_parameters(getattr(transform, "source", transform))
        if params.applies_to_all_frames:
            f = 0
        if (d, f) not in seen:
            linear = linear and _linear(transform)
            pair = params.slope_intercept or (1.0, 0.0)
            seen[(d, f)] = (float(pair[0]), float(pair[1]))
        slope[k], intercept[k] = seen[(d, f)]
    shape = np.asarray(transformer.frames).shape[:-1]
    first = transformer.datasets[0]
    monochrome = str(first.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
    units = str(first.get("RescaleType", "") or "")
    if not units:
        for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            try:
                item = first[seq][0].PixelValueTransformationSequence[0]
                units = str(item.get("RescaleType", "") or "")
            except (KeyError, AttributeError, IndexError):
                continue
            if units:
                break
    if not units and str(first.get("Modality", "")) == "CT" and not np.all(np.isnan(slope)):
        units = "HU"  # CT Image IOD: the rescaled values are Hounsfield units
    return Rescale(
        slope.reshape(shape),
        intercept.reshape(shape),
        linear and monochrome,
        "" if units == "US" or not monochrome else units,
        monochrome,
    )


def voi_limits(transformer: Any, position: int = 0) -> tuple[float, float] | None:
    """The first VOI window of the first frame at ``position`` along the first axis of
    the transformer's frame table (a slice, or a frame), as ``(low, high)`` in modality
    (rescaled) values; None without a window.

    The window is highdicom's (per-frame Frame VOI LUT included), with the real world
    value mapping left out (it supersedes the VOI). The limits are where the window
    reaches the ends of its output range: for ``LINEAR`` ``center - 0.5 -/+ (width - 1)
    / 2``, for ``LINEAR_EXACT`` ``center -/+ width / 2``.
    """
    d, f = (int(v) for v in np.asarray(transformer.frames)[position].reshape(-1, 2)[0])
    if d < 0:
        return None
    ds = transformer.datasets[d]
    common: dict[str, Any] = {
        "apply_real_world_transform": False,
        "apply_palette_color_lut": False,
        "apply_icc_profile": False,
    }
    try:
        voi = pixel_transform_parameters(
            combined_pixel_transform(ds, f, apply_voi_transform=None, **common)
        )
        modality = pixel_transform_parameters(
            combined_pixel_transform(ds, f, apply_voi_transform=False, **common)
        )
    except (ValueError, AttributeError, KeyError, TypeError, IndexError, RuntimeError):
        return None
    window = voi.window_center_width
    if window is None:
        return None
    # highdicom moves the window onto stored values; move it back to modality values
    slope, intercept = modality.slope_intercept or (1.0, 0.0)
    center = float(window[0]) * float(slope) + float(intercept)
    width = abs(float(window[1]) * float(slope))
    if str(voi.voi_function).upper().endswith("LINEAR_EXACT"):
        return center - width / 2, center + width / 2
    return center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2


def stored_range(dataset: Any) -> tuple[float, float]:
    """The values Bits Stored and Pixel Representation allow (float pixel data: its
    dtype's range is not useful, so ``(0, 1)``)."""
    if "FloatPixelData" in dataset or "DoubleFloatPixelData" in dataset:
        return 0.0, 1.0
    bits = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 8)) or 8)
    if int(dataset.get("PixelRepresentation", 0) or 0):
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)
