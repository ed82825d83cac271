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
    "indices_to_positions",
    "positions_to_indices",
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
    duplicates or tilt found (default). ``POSITIONS``: open any stack of parallel
    slices and keep the real per-slice positions. Missing slices (gaps that are whole
    multiples of the smallest spacing, no tilt) become absent chunks with a
    missing-slice mask, and the affine (smallest spacing) is exact. Any other
    irregularity (spacing that changes partway, gantry tilt, both) keeps one index
    per real slice: the stack is then *not regular* (``regular`` is false in the
    geometry record), the affine's slice column is only the mean step from the first
    slice to the last, and the exact position of slice ``k`` is ``positions[k]``
    (which ``Volume.map_indices_to_reference`` follows). ``SHEAR``: for gantry tilt
    with uniform spacing, an exact sheared affine whose slice axis is the real step.
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
    regular : bool
        Whether the affine places every slice exactly (``False``: only the first
        slice, the others are at ``positions``; ``geometry="positions"`` with a
        changing spacing or a tilt).
    """

    order: np.ndarray
    affine: np.ndarray
    spacing: float
    positions: np.ndarray
    findings: list[str] = field(default_factory=list)
    policy: GeometryPolicy = GeometryPolicy.RAISE
    regular: bool = True

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
            "regular": self.regular,
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
    if not uniform and policy is GeometryPolicy.SHEAR:
        raise LayoutError(
            f"{where}: geometry='shear' needs uniform spacing: "
            + "; ".join(findings)
            + ". geometry='positions' keeps every slice at its real position"
        )
    if policy is GeometryPolicy.POSITIONS and not tilt and (uniform or whole):
        # a tilt within the tolerance still moves far slices off a normal-only affine:
        # positions are kept exactly unless the grid holds every slice to rtol
        step_n = mean if uniform else base
        grid_index = np.round((d - d[0]) / step_n)
        predicted = pos[order[0]] + grid_index[:, None] * (direction * step_n)
        off = float(np.linalg.norm(predicted - pos[order], axis=1).max())
        if off > rtol * step_n:
            tilt = True
            findings.append(
                f"slices lie up to {off:.4g} mm off a grid along the normal (more than "
                f"{rtol} of the {step_n:.4g} mm spacing)"
            )
    if policy is GeometryPolicy.POSITIONS and (tilt or not (uniform or whole)):
        # one index per real slice; the affine holds the first slice and the mean step
        step = (pos[order[-1]] - pos[order[0]]) / (n - 1)
        affine = affine_from_geometry(orientation, pixel_spacing, pos[order[0]], step)
        findings.append(
            "irregular stack kept with its real positions: the affine's slice axis is the "
            f"mean step {_fmt(step)} mm, slice k lies at positions[k]"
        )
        return StackGeometry(
            order, affine, float(np.linalg.norm(step)), pos[order], findings, policy, False
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
    # POSITIONS, missing slices: a regular grid on the smallest spacing
    index = np.concatenate([[0], np.cumsum(np.round(multiples).astype(np.int64))])
    full = np.full(int(index[-1]) + 1, -1, dtype=np.int64)
    full[index] = order
    grid_pos = np.full((len(full), 3), np.nan)
    grid_pos[index] = pos[order]
    affine = affine_from_geometry(orientation, pixel_spacing, pos[order[0]], direction * base)
    return StackGeometry(full, affine, base, grid_pos, findings, policy)


def _along_normal(positions: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The in-plane normal of ``affine`` and each position's distance along it."""
    normal = np.cross(affine[:3, 2], affine[:3, 1])
    normal /= np.linalg.norm(normal)
    return normal, (positions - positions[0]) @ normal


def indices_to_positions(ijk: np.ndarray, positions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(n, 3)`` indices -> coordinates for a stack that is not regular: slice ``k`` at
    ``positions[k]`` (linear between neighbours), rows and columns from ``affine``."""
    k = np.arange(len(positions))
    origin = np.stack([np.interp(ijk[:, 0], k, positions[:, a]) for a in range(3)], axis=1)
    return origin + (affine[:3, 1:3] @ ijk[:, 1:].T).T


def positions_to_indices(xyz: np.ndarray, positions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The inverse of [`indices_to_positions`][dicom_dask.images.geometry.indices_to_positions]
    for parallel slices: the slice from the distance along the normal (extrapolated by
    the mean step beyond the end slices), then the row and column in that plane."""
    normal, distances = _along_normal(positions, affine)
    along = (xyz - positions[0]) @ normal
    k = np.arange(len(positions), dtype=np.float64)
    d, kk = (distances, k) if distances[-1] >= distances[0] else (distances[::-1], k[::-1])
    s = np.interp(along, d, kk, left=np.nan, right=np.nan)
    outside = np.isnan(s)
    if outside.any():
        step = (d[-1] - d[0]) / (kk[-1] - kk[0])
        s[outside] = kk[0] + (along[outside] - d[0]) / step
    origin = np.stack([np.interp(s, k, positions[:, a]) for a in range(3)], axis=1)
    inplane = np.linalg.lstsq(affine[:3, 1:3], (xyz - origin).T, rcond=None)[0].T
    return np.column_stack([s, inplane])
