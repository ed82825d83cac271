"""Volume geometry: sort slices along their normal, check the spacing, build the affine.

Pure NumPy. The affine follows highdicom's convention: it maps ``(slice, row,
column)`` indices to LPS patient coordinates in mm, slices ordered so that the
three index axes form a right-handed system with the in-plane axes (down the
rows, along the columns), i.e. slices run against ``row_cosines x column_cosines``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dicom_dask.errors import LayoutError

__all__ = [
    "GeometryPolicy",
    "StackGeometry",
    "affine_from_geometry",
    "slice_direction",
    "stack_geometry",
]

#: Default relative tolerance on slice spacing (fraction of the spacing), as highdicom.
SPACING_RTOL = 0.01
#: Default tolerance on the angle between the stacking direction and the normal (1 - cos).
PERPENDICULAR_TOL = 1e-3
#: Default tolerance on differences between direction cosines of slices.
ORIENTATION_TOL = 1e-4


class GeometryPolicy(enum.Enum):
    """What to do with slices that do not form a regular, orthogonal stack.

    ``RAISE``: raise [`LayoutError`][dicom_dask.errors.LayoutError] listing the gaps,
    duplicates or tilt found (default). ``POSITIONS``: keep every slice; missing
    slices (gaps that are whole multiples of the smallest spacing) become absent
    chunks with a missing-slice mask, and the real per-slice positions are kept as
    a coordinate; the affine uses the smallest spacing. ``SHEAR``: for gantry tilt,
    an exact sheared affine whose slice axis is the real step between slices.
    """

    RAISE = "raise"
    POSITIONS = "positions"
    SHEAR = "shear"

    @classmethod
    def coerce(cls, value: GeometryPolicy | str) -> GeometryPolicy:
        """Accept the enum or its value."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"geometry policy must be one of {choices}, got {value!r}") from None


def slice_direction(orientation: Any) -> np.ndarray:
    """The unit vector along which slice indices increase (highdicom's convention)."""
    o = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise LayoutError(f"Image Orientation (Patient) {o.tolist()} has parallel axes")
    return -normal / norm


def affine_from_geometry(
    orientation: Any, pixel_spacing: Any, origin: Any, step: Any
) -> np.ndarray:
    """4x4 ``(slice, row, column, 1)`` -> LPS affine.

    ``pixel_spacing`` is (between rows, between columns); ``step`` is the vector
    from one slice to the next.
    """
    o = np.asarray(orientation, dtype=np.float64)
    dy, dx = (float(v) for v in pixel_spacing)
    out = np.eye(4)
    out[:3, 0] = np.asarray(step, dtype=np.float64)
    out[:3, 1] = o[3:] * dy
    out[:3, 2] = o[:3] * dx
    out[:3, 3] = np.asarray(origin, dtype=np.float64)
    return out


@dataclass(frozen=True)
class StackGeometry:
    """The sorted stack: where each input slice goes and the affine.

    Attributes
    ----------
    order : numpy.ndarray
        For each output slice index, the input slice (``-1`` for a missing slice).
    affine : numpy.ndarray
        4x4 ``(slice, row, column)`` -> LPS.
    spacing : float
        Distance between slices (mm).
    positions : numpy.ndarray
        ``(n, 3)`` Image Position (Patient) of each output slice (NaN if missing).
    findings : list of str
        Irregularities found (gaps, duplicates, tilt), empty for a regular stack.
    policy : GeometryPolicy
        How irregularities were handled.
    """

    order: np.ndarray
    affine: np.ndarray
    spacing: float
    positions: np.ndarray
    findings: list[str] = field(default_factory=list)
    policy: GeometryPolicy = GeometryPolicy.RAISE

    @property
    def missing(self) -> np.ndarray:
        """Boolean mask of missing slices."""
        return self.order < 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the handling (stored in the Volume's metadata)."""
        return {
            "policy": self.policy.value,
            "spacing_mm": self.spacing,
            "findings": list(self.findings),
            "missing_slices": np.flatnonzero(self.missing).tolist(),
        }


def _fmt(values: Any) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in np.asarray(values).ravel()) + "]"


def stack_geometry(
    positions: Any,
    orientation: Any,
    pixel_spacing: Any,
    *,
    policy: GeometryPolicy | str = GeometryPolicy.RAISE,
    rtol: float = SPACING_RTOL,
    perpendicular_tol: float = PERPENDICULAR_TOL,
    single_spacing: float | None = None,
    where: str = "series",
) -> StackGeometry:
    """Sort slices at ``positions`` along the slice direction and check their spacing.

    ``single_spacing`` is the slice step of a one-slice stack (its thickness).

    Raises
    ------
    LayoutError
        Under [`GeometryPolicy.RAISE`][dicom_dask.images.geometry.GeometryPolicy] for duplicates,
        gaps, non-uniform spacing or tilt, with what was found; under every policy for duplicated
        positions.
    """
    policy = GeometryPolicy.coerce(policy)
    pos = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    n = len(pos)
    direction = slice_direction(orientation)
    if n == 1:  # as highdicom: the slice thickness if known, else 1 mm
        step = float(single_spacing or 1.0)
        return StackGeometry(
            np.zeros(1, dtype=np.int64),
            affine_from_geometry(orientation, pixel_spacing, pos[0], direction * step),
            step,
            pos,
            [],
            policy,
        )
    distance = pos @ direction
    order = np.argsort(distance, kind="stable")
    d = distance[order]
    gaps = np.diff(d)
    findings: list[str] = []
    dup = np.flatnonzero(gaps < 1e-4 * max(1.0, float(np.abs(gaps).max())))
    if dup.size:
        pairs = [(int(order[i]), int(order[i + 1])) for i in dup[:5]]
        raise LayoutError(
            f"{where}: {dup.size} duplicated slice position(s): input slices {pairs} lie at "
            f"the same distance along the slice normal (e.g. {d[dup[0]]:.4f} mm); "
            "split them (different acquisitions, echoes or times) or remove duplicates"
        )
    base = float(gaps.min())
    mean = float((d[-1] - d[0]) / (n - 1))
    steps = np.diff(pos[order], axis=0)
    step_dirs = steps / np.linalg.norm(steps, axis=1, keepdims=True)
    cosines = step_dirs @ direction
    tilt = bool((1.0 - cosines > perpendicular_tol).any())
    uniform = bool(np.all(np.abs(gaps - mean) <= rtol * abs(mean)))
    multiples = gaps / base
    whole = bool(np.all(np.abs(multiples - np.round(multiples)) <= rtol * np.round(multiples)))
    if not uniform:
        if whole:
            missing = int(np.round(multiples).sum() - len(gaps))
            findings.append(
                f"{missing} missing slice(s): gaps of {_fmt(gaps[np.round(multiples) > 1])} mm "
                f"where the spacing is {base:.4g} mm"
            )
        else:
            findings.append(
                f"non-uniform spacing: gaps between sorted slices are {_fmt(gaps)} mm "
                f"(relative tolerance {rtol})"
            )
    if tilt:
        angle = float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))
        findings.append(
            f"slices are stacked {angle:.2f} degrees off their normal (gantry tilt): "
            f"step {_fmt(steps.mean(axis=0))} mm, normal {_fmt(direction)}"
        )
    if findings and policy is GeometryPolicy.RAISE:
        raise LayoutError(
            f"{where}: {n} slices do not form a regular volume: "
            + "; ".join(findings)
            + ". Pass geometry='positions' (keep real positions, mask missing slices)"
            + (" or geometry='shear' (exact sheared affine)" if tilt else "")
        )
    if tilt and policy is GeometryPolicy.POSITIONS:
        raise LayoutError(f"{where}: gantry tilt needs geometry='shear': " + "; ".join(findings))
    if not uniform and policy is GeometryPolicy.SHEAR:
        raise LayoutError(
            f"{where}: geometry='shear' needs uniform spacing: " + "; ".join(findings)
        )
    if tilt:  # SHEAR: the real mean step
        step = (pos[order[-1]] - pos[order[0]]) / (n - 1)
        affine = affine_from_geometry(orientation, pixel_spacing, pos[order[0]], step)
        return StackGeometry(
            order, affine, float(np.linalg.norm(step)), pos[order], findings, policy
        )
    if uniform:
        affine = affine_from_geometry(orientation, pixel_spacing, pos[order[0]], direction * mean)
        return StackGeometry(order, affine, mean, pos[order], findings, policy)
    # POSITIONS: a regular grid on the smallest spacing, where it fits
    if whole:
        index = np.concatenate([[0], np.cumsum(np.round(multiples).astype(np.int64))])
        full = np.full(int(index[-1]) + 1, -1, dtype=np.int64)
        full[index] = order
        grid_pos = np.full((len(full), 3), np.nan)
        grid_pos[index] = pos[order]
        affine = affine_from_geometry(orientation, pixel_spacing, pos[order[0]], direction * base)
        return StackGeometry(full, affine, base, grid_pos, findings, policy)
    affine = affine_from_geometry(orientation, pixel_spacing, pos[order[0]], direction * mean)
    return StackGeometry(order, affine, mean, pos[order], findings, policy)
