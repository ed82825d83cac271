"""Where a result lies on its source, at the result's own resolution.

A result computed over a slide (a patch-score map, a coarse probability map) rarely has
the shape of a pyramid level: it has its own pixel spacing and its own origin, in the
slide's Frame of Reference.
[`place_on_slide`][dicom_dask.integrations.writers.placement.place_on_slide] finds that
geometry from what the writer was given -- an array with the shape of a level, a
``pixel_spacing=`` (and ``origin=``), or an xarray ``DataArray`` whose ``affine``
attribute maps its ``(row, column)`` indices to slide millimetres (what
[`PatchSampler.to_map`][dicom_dask.integrations.patches.PatchSampler.to_map] gives) --
and checks it against the source.

Conventions are highdicom's pixel-index ones and
[`Level.affine`][dicom_dask.images.level.Level.affine]'s: the origin is the centre of the
result's pixel ``(0, 0)``, in slide ``(x, y, z)`` mm; the orientation is the source's
Image Orientation (Slide).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicom_dask.errors import LayoutError
from dicom_dask.images.level import Level
from dicom_dask.images.slide import Slide

__all__ = [
    "SlidePlacement",
    "VolumePlacement",
    "place_on_slide",
    "place_on_volume",
    "slide_geometry",
    "unwrap",
]


@dataclass(frozen=True)
class SlidePlacement:
    """A result's matrix on a slide: the level it references and its own geometry.

    Attributes
    ----------
    level : Level
        The source level the result references (its header gives patient, study,
        specimen, Frame of Reference and orientation).
    shape : (int, int)
        Rows and columns of the result.
    pixel_spacing : (float, float)
        Row and column spacing of the result in mm.
    origin : (float, float, float)
        Slide ``(x, y, z)`` in mm of the centre of the result's pixel ``(0, 0)``.
    resampled : bool
        Whether the result's grid differs from the level's.
    """

    level: Level
    shape: tuple[int, int]
    pixel_spacing: tuple[float, float]
    origin: tuple[float, float, float]
    resampled: bool

    @property
    def affine(self) -> np.ndarray:
        """4x4: the result's ``(row, column, 0, 1)`` -> slide ``(x, y, z, 1)`` mm."""
        o = np.asarray(self.level.image.orientation, dtype=np.float64)
        out = np.eye(4)
        out[:3, 0] = o[3:] * self.pixel_spacing[0]
        out[:3, 1] = o[:3] * self.pixel_spacing[1]
        out[:3, 2] = np.cross(o[:3], o[3:])
        out[:3, 3] = self.origin
        return out


@dataclass(frozen=True)
class VolumePlacement:
    """A result's frames over a volume: one per slice, with its own in-plane grid.

    Attributes
    ----------
    shape : (int, int, int)
        Slices, rows and columns of the result.
    pixel_spacing : (float, float)
        Row and column spacing in mm.
    positions : numpy.ndarray
        ``(slices, 3)`` patient coordinates (mm) of each frame's pixel ``(0, 0)`` centre.
    resampled : bool
        Whether the in-plane grid differs from the volume's.
    """

    shape: tuple[int, int, int]
    pixel_spacing: tuple[float, float]
    positions: np.ndarray
    resampled: bool


def unwrap(data: Any, like: Any = None) -> tuple[Any, np.ndarray | None]:
    """The array inside ``data`` and the 4x4 affine that places it, when it says.

    An xarray DataArray's ``affine`` attribute; else, over a slide, its ``y``/``x``
    coordinates (mm along the slide's axes, as the xarray backend and
    [`PatchSampler.to_map`][dicom_dask.integrations.patches.PatchSampler.to_map] give
    them), which survive the arithmetic that drops attributes (``result > 0.5``).
    """
    attrs = getattr(data, "attrs", None)
    if attrs is None or not hasattr(data, "dims") or not hasattr(data, "data"):
        return data, None
    affine = attrs.get("affine")
    if affine is not None:
        return data.data, np.asarray(affine, dtype=np.float64)
    if isinstance(like, Slide | Level) and {"y", "x"} <= set(data.coords):
        return data.data, _affine_from_coords(data, _levels(like)[0])
    return data.data, None


def _affine_from_coords(data: Any, level: Level) -> np.ndarray | None:
    """The affine of a map whose ``y``/``x`` coordinates are mm along ``level``'s axes."""
    y = np.asarray(data.coords["y"].values, dtype=np.float64)
    x = np.asarray(data.coords["x"].values, dtype=np.float64)
    if y.ndim != 1 or x.ndim != 1 or len(y) < 2 or len(x) < 2:
        return None
    dy, dx = np.diff(y), np.diff(x)
    if not (np.allclose(dy, dy[0], rtol=1e-6) and np.allclose(dx, dx[0], rtol=1e-6)):
        raise LayoutError("the map's y/x coordinates are not evenly spaced: resample it first")
    _level_spacing(level)
    o = np.asarray(level.image.orientation, dtype=np.float64)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    depth = float(level.affine[:3, 3] @ normal) if np.linalg.norm(normal) else 0.0
    out = np.eye(4)
    out[:3, 0] = col_dir * dy[0]
    out[:3, 1] = row_dir * dx[0]
    out[:3, 3] = y[0] * col_dir + x[0] * row_dir + depth * normal
    return out


def _pair(value: Any, name: str) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64)))
    except (TypeError, ValueError) as exc:
        raise LayoutError(f"{name} must be (row, column) spacing in mm, not {value!r}") from exc
    if len(pair) == 1:
        pair = (pair[0], pair[0])
    if len(pair) != 2 or not all(np.isfinite(pair)) or min(pair) <= 0:
        raise LayoutError(
            f"{name} must be two positive (row, column) spacings in mm, not {value!r}"
        )
    return pair[0], pair[1]


def _levels(like: Slide | Level) -> tuple[Level, ...]:
    if isinstance(like, Slide):
        return tuple(like.pyramid)
    if isinstance(like, Level):
        return (like,)
    raise LayoutError(f"like= must be a Slide, Level or Volume, not {type(like).__name__}")


def place_on_slide(
    like: Slide | Level,
    shape: Sequence[int],
    *,
    pixel_spacing: Any = None,
    origin: Any = None,
    affine: np.ndarray | None = None,
) -> SlidePlacement:
    """The geometry of a ``shape`` result over ``like``.

    Parameters
    ----------
    like : Slide or Level
        The source.
    shape : (int, int)
        Rows and columns of the result.
    pixel_spacing : float or (float, float), optional
        The result's spacing in mm. Without it (and without ``affine``) the result must
        have the shape of a level, and takes that level's geometry.
    origin : (x, y) or (x, y, z), optional
        Slide mm of the centre of the result's pixel ``(0, 0)``. Default: the result's
        top-left corner is the top-left corner of level 0.
    affine : numpy.ndarray, optional
        A 4x4 ``(row, column, 0, 1)`` -> slide mm matrix (an xarray map's ``affine``);
        gives the spacing and origin, and must have the source's orientation.
    """
    levels = _levels(like)
    rows, cols = (int(v) for v in shape)
    if affine is not None:
        a = np.asarray(affine, dtype=np.float64)
        if a.shape != (4, 4):
            raise LayoutError(f"the result's affine must be 4x4, not {a.shape}")
        spacing = (float(np.linalg.norm(a[:3, 0])), float(np.linalg.norm(a[:3, 1])))
        _check_orientation(levels[0], a, spacing)
        pixel_spacing, origin = spacing, a[:3, 3]
    if pixel_spacing is None and origin is None:
        for level in levels:
            if tuple(level.matrix_shape) == (rows, cols):
                return SlidePlacement(
                    level, (rows, cols), _level_spacing(level), _level_origin(level), False
                )
        raise LayoutError(
            f"labels of shape {(rows, cols)} match no level of the source "
            f"({[lv.matrix_shape for lv in levels]}); pass pixel_spacing= (mm) to write a "
            "result at its own resolution"
        )
    if pixel_spacing is None:
        raise LayoutError("origin= needs pixel_spacing= (the result's spacing in mm)")
    spacing = _pair(pixel_spacing, "pixel_spacing")
    for level in levels:  # the spacing and origin of a level: that level, as is
        same = tuple(level.matrix_shape) == (rows, cols) and np.allclose(
            spacing, _level_spacing(level), rtol=1e-6
        )
        if same and (origin is None or np.allclose(_xyz(origin, level), _level_origin(level))):
            return SlidePlacement(level, (rows, cols), spacing, _level_origin(level), False)
    base = levels[0]
    if origin is None:
        ls = _level_spacing(base)
        # the centre of the result's first pixel, in the level's (row, column) indices
        index = [spacing[0] / ls[0] / 2 - 0.5, spacing[1] / ls[1] / 2 - 0.5, 0.0, 1.0]
        xyz = (base.affine @ np.asarray(index))[:3]
    else:
        xyz = _xyz(origin, base)
    return SlidePlacement(base, (rows, cols), spacing, (xyz[0], xyz[1], xyz[2]), True)


def _level_spacing(level: Level) -> tuple[float, float]:
    if not level.pixel_spacing:
        raise LayoutError(
            f"{level.urls[0]}: the source has no (0028,0030) Pixel Spacing: a result "
            "cannot be placed on it"
        )
    return float(level.pixel_spacing[0]), float(level.pixel_spacing[1])


def _level_origin(level: Level) -> tuple[float, float, float]:
    _level_spacing(level)
    x, y, z = (float(v) for v in level.affine[:3, 3])
    return x, y, z


def _xyz(origin: Any, level: Level) -> np.ndarray:
    values = np.asarray(origin, dtype=np.float64).ravel()
    if values.size == 2:
        values = np.append(values, _level_origin(level)[2])
    if values.size != 3 or not np.isfinite(values).all():
        raise LayoutError(f"origin must be slide (x, y[, z]) in mm, not {origin!r}")
    return values


def _check_orientation(level: Level, affine: np.ndarray, spacing: tuple[float, float]) -> None:
    if min(spacing) <= 0:
        raise LayoutError(f"the result's affine has a zero pixel spacing: {affine.tolist()}")
    o = np.asarray(level.image.orientation, dtype=np.float64)
    cols = affine[:3, :2] / np.asarray(spacing)
    if not (
        np.allclose(cols[:, 0], o[3:], atol=1e-4) and np.allclose(cols[:, 1], o[:3], atol=1e-4)
    ):
        raise LayoutError(
            f"the result's axes {cols.T.round(4).tolist()} are not the source's Image "
            f"Orientation (Slide) {o.tolist()} ({level.urls[0]}): resample it onto the "
            "source's axes"
        )


def place_on_volume(
    volume: Any,
    shape: Sequence[int],
    *,
    pixel_spacing: Any = None,
    affine: np.ndarray | None = None,
) -> VolumePlacement:
    """The frames of a ``(slices, rows, columns)`` result over the slices of ``volume``.

    The result has one frame per slice of the volume, at the slice's position; its
    in-plane grid is the volume's, or its own ``pixel_spacing`` (its top-left corner on
    the volume's), or what ``affine`` (``(slice, row, column, 1)`` -> patient mm) says.
    """
    slices, rows, cols = (int(v) for v in shape)
    nslices, vrows, vcols = volume.spatial_shape
    if slices != nslices:
        raise LayoutError(
            f"a result over a volume has one frame per slice: {slices} frames for {nslices} slices"
        )
    a = np.asarray(volume.affine, dtype=np.float64)
    spacing_v = (float(np.linalg.norm(a[:3, 1])), float(np.linalg.norm(a[:3, 2])))
    if affine is not None:
        b = np.asarray(affine, dtype=np.float64)
        if b.shape != (4, 4) or not np.allclose(b[:3, 0], a[:3, 0], atol=1e-4):
            raise LayoutError("the result's affine does not keep the volume's slices")
        spacing = (float(np.linalg.norm(b[:3, 1])), float(np.linalg.norm(b[:3, 2])))
        if not np.allclose(
            b[:3, 1:3] / np.asarray(spacing), a[:3, 1:3] / np.asarray(spacing_v), atol=1e-4
        ):
            raise LayoutError("the result's rows and columns are not along the volume's")
        positions = b[:3, 3] + np.arange(slices)[:, None] * b[:3, 0]
        return VolumePlacement((slices, rows, cols), spacing, positions, True)
    if pixel_spacing is None:
        if (rows, cols) != (vrows, vcols):
            raise LayoutError(
                f"a result of {rows} x {cols} pixels over a volume of {vrows} x {vcols}: "
                "pass pixel_spacing= (mm) to write it at its own resolution"
            )
        positions = a[:3, 3] + np.arange(slices)[:, None] * a[:3, 0]
        return VolumePlacement((slices, rows, cols), spacing_v, positions, False)
    spacing = _pair(pixel_spacing, "pixel_spacing")
    shift = [0.0, spacing[0] / spacing_v[0] / 2 - 0.5, spacing[1] / spacing_v[1] / 2 - 0.5, 1.0]
    first = (a @ np.asarray(shift))[:3]
    positions = first + np.arange(slices)[:, None] * a[:3, 0]
    resampled = (rows, cols) != (vrows, vcols) or not np.allclose(spacing, spacing_v)
    return VolumePlacement((slices, rows, cols), spacing, positions, resampled)


def slide_geometry(placement: SlidePlacement) -> dict[str, Any]:
    """highdicom's ``pixel_measures``, ``plane_orientation`` and ``plane_positions``
    keywords for a tiled result with ``placement``'s geometry."""
    import highdicom as hd

    ds = placement.level.image.dataset
    thickness = float(ds.get("ImagedVolumeDepth") or 0.0)
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    measures = shared[0].get("PixelMeasuresSequence") if shared else None
    if measures and measures[0].get("SliceThickness"):
        thickness = float(measures[0].SliceThickness)
    orientation = [float(v) for v in placement.level.image.orientation]
    return {
        "pixel_measures": hd.PixelMeasuresSequence(
            pixel_spacing=list(placement.pixel_spacing), slice_thickness=thickness or 0.001
        ),
        "plane_orientation": hd.PlaneOrientationSequence(
            coordinate_system="SLIDE", image_orientation=orientation
        ),
        "plane_positions": [
            hd.PlanePositionSequence(
                coordinate_system="SLIDE",
                image_position=[float(v) for v in placement.origin],
                pixel_matrix_position=(1, 1),
            )
        ],
    }
