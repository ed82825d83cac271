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
    "SliceMeasurements",
    "StackGeometry",
    "affine_from_geometry",
    "indices_to_positions",
    "measure_slices",
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


@dataclass(frozen=True)
class SliceMeasurements:
    """What the slice positions of a stack measure, before any judgement.

    Attributes
    ----------
    positions : numpy.ndarray
        ``(n, 3)`` Image Position (Patient) of each input slice.
    direction : numpy.ndarray
        Unit vector along which slice indices increase (see
        [`slice_direction`][dicom_dask.images.geometry.slice_direction]).
    order : numpy.ndarray
        Input slices sorted by their distance along ``direction``.
    distances : numpy.ndarray
        Sorted distances along ``direction`` (mm).
    """

    positions: np.ndarray
    direction: np.ndarray
    order: np.ndarray
    distances: np.ndarray

    @property
    def sorted_positions(self) -> np.ndarray:
        """``positions`` in sorted order."""
        return self.positions[self.order]

    @property
    def gaps(self) -> np.ndarray:
        """Distances between neighbouring sorted slices (mm)."""
        return np.diff(self.distances)

    @property
    def smallest(self) -> float:
        """The smallest gap (mm)."""
        return float(self.gaps.min())

    @property
    def mean(self) -> float:
        """The mean gap: first slice to last over ``n - 1`` (mm)."""
        d = self.distances
        return float((d[-1] - d[0]) / (len(d) - 1))

    @property
    def steps(self) -> np.ndarray:
        """``(n - 1, 3)`` vectors from each sorted slice to the next."""
        return np.diff(self.sorted_positions, axis=0)

    @property
    def mean_step(self) -> np.ndarray:
        """The vector from the first sorted slice to the last over ``n - 1``."""
        p = self.sorted_positions
        return (p[-1] - p[0]) / (len(p) - 1)

    @property
    def cosines(self) -> np.ndarray:
        """Cosine of the angle between each step and ``direction``."""
        steps = self.steps
        return (steps / np.linalg.norm(steps, axis=1, keepdims=True)) @ self.direction

    @property
    def multiples(self) -> np.ndarray:
        """Each gap in units of the smallest."""
        return self.gaps / self.smallest


def measure_slices(positions: Any, orientation: Any) -> SliceMeasurements:
    """Sort the slices at ``positions`` along the slice direction of ``orientation``."""
    pos = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    direction = slice_direction(orientation)
    distance = pos @ direction
    order = np.argsort(distance, kind="stable")
    return SliceMeasurements(pos, direction, order, distance[order])


@dataclass(frozen=True)
class _Judgement:
    """What the measurements amount to under the tolerances."""

    uniform: bool  # every gap within rtol of the mean
    whole: bool  # every gap a whole multiple of the smallest (missing slices)
    tilt: bool  # some step off the normal by more than perpendicular_tol
    findings: list[str]


def _refuse_duplicates(m: SliceMeasurements, where: str) -> None:
    """Raise for slices at the same distance along the normal (under every policy)."""
    gaps = m.gaps
    dup = np.flatnonzero(gaps < 1e-4 * max(1.0, float(np.abs(gaps).max())))
    if dup.size:
        pairs = [(int(m.order[i]), int(m.order[i + 1])) for i in dup[:5]]
        raise LayoutError(
            f"{where}: {dup.size} duplicated slice position(s): input slices {pairs} lie at "
            f"the same distance along the slice normal (e.g. {m.distances[dup[0]]:.4f} mm); "
            "split them (different acquisitions, echoes or times) or remove duplicates"
        )


def _judge(m: SliceMeasurements, rtol: float, perpendicular_tol: float) -> _Judgement:
    """Uniform spacing, missing slices and tilt, with a finding for each irregularity."""
    gaps, base, mean, multiples = m.gaps, m.smallest, m.mean, m.multiples
    cosines = m.cosines
    tilt = bool((1.0 - cosines > perpendicular_tol).any())
    uniform = bool(np.all(np.abs(gaps - mean) <= rtol * abs(mean)))
    whole = bool(np.all(np.abs(multiples - np.round(multiples)) <= rtol * np.round(multiples)))
    findings: list[str] = []
    if not uniform and whole:
        missing = int(np.round(multiples).sum() - len(gaps))
        findings.append(
            f"{missing} missing slice(s): gaps of {_fmt(gaps[np.round(multiples) > 1])} mm "
            f"where the spacing is {base:.4g} mm"
        )
    elif not uniform:
        findings.append(
            f"non-uniform spacing: gaps between sorted slices are {_fmt(gaps)} mm "
            f"(relative tolerance {rtol})"
        )
    if tilt:
        angle = float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))
        findings.append(
            f"slices are stacked {angle:.2f} degrees off their normal (gantry tilt): "
            f"step {_fmt(m.steps.mean(axis=0))} mm, normal {_fmt(m.direction)}"
        )
    return _Judgement(uniform, whole, tilt, findings)


def _refuse(j: _Judgement, policy: GeometryPolicy, n: int, where: str) -> None:
    """Raise what ``policy`` does not accept: any irregularity under ``RAISE``,
    non-uniform spacing under ``SHEAR``."""
    if j.findings and policy is GeometryPolicy.RAISE:
        raise LayoutError(
            f"{where}: {n} slices do not form a regular volume: "
            + "; ".join(j.findings)
            + ". Pass geometry='positions' (keep real positions, mask missing slices)"
            + (" or geometry='shear' (exact sheared affine)" if j.tilt else "")
        )
    if not j.uniform and policy is GeometryPolicy.SHEAR:
        raise LayoutError(
            f"{where}: geometry='shear' needs uniform spacing: "
            + "; ".join(j.findings)
            + ". geometry='positions' keeps every slice at its real position"
        )


def _off_grid(m: SliceMeasurements, j: _Judgement, rtol: float) -> _Judgement:
    """Under ``POSITIONS``, a tilt within the tolerance still moves far slices off a
    normal-only affine: positions are kept exactly unless the grid holds every slice
    to ``rtol`` (the judgement then counts as tilted)."""
    step_n = m.mean if j.uniform else m.smallest
    d = m.distances
    grid_index = np.round((d - d[0]) / step_n)
    predicted = m.sorted_positions[0] + grid_index[:, None] * (m.direction * step_n)
    off = float(np.linalg.norm(predicted - m.sorted_positions, axis=1).max())
    if off <= rtol * step_n:
        return j
    finding = (
        f"slices lie up to {off:.4g} mm off a grid along the normal (more than "
        f"{rtol} of the {step_n:.4g} mm spacing)"
    )
    return _Judgement(j.uniform, j.whole, True, [*j.findings, finding])


def _geometry(
    m: SliceMeasurements,
    orientation: Any,
    pixel_spacing: Any,
    step: np.ndarray,
    *,
    spacing: float,
    findings: list[str],
    policy: GeometryPolicy,
    regular: bool = True,
    order: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> StackGeometry:
    """The geometry of the sorted slices of ``m`` with slice step ``step`` (``order`` and
    ``positions`` default to the sorted input slices)."""
    affine = affine_from_geometry(orientation, pixel_spacing, m.sorted_positions[0], step)
    return StackGeometry(
        order=m.order if order is None else order,
        affine=affine,
        spacing=spacing,
        positions=m.sorted_positions if positions is None else positions,
        findings=findings,
        policy=policy,
        regular=regular,
    )


def _with_gaps(
    m: SliceMeasurements,
    orientation: Any,
    pixel_spacing: Any,
    *,
    findings: list[str],
    policy: GeometryPolicy,
) -> StackGeometry:
    """A regular grid on the smallest spacing, missing slices as ``-1`` / NaN."""
    index = np.concatenate([[0], np.cumsum(np.round(m.multiples).astype(np.int64))])
    full = np.full(int(index[-1]) + 1, -1, dtype=np.int64)
    full[index] = m.order
    grid_pos = np.full((len(full), 3), np.nan)
    grid_pos[index] = m.sorted_positions
    step = m.direction * m.smallest
    return _geometry(
        m,
        orientation,
        pixel_spacing,
        step,
        order=full,
        positions=grid_pos,
        spacing=m.smallest,
        findings=findings,
        policy=policy,
    )


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

    Measures the stack ([`measure_slices`][dicom_dask.images.geometry.measure_slices]),
    judges it under ``rtol`` and ``perpendicular_tol``, then applies ``policy``.
    ``single_spacing`` is the slice step of a one-slice stack (its thickness).

    Raises
    ------
    LayoutError
        Under [`GeometryPolicy.RAISE`][dicom_dask.images.geometry.GeometryPolicy] for duplicates,
        gaps, non-uniform spacing or tilt, with what was found; under every policy for duplicated
        positions.
    """
    policy = GeometryPolicy.coerce(policy)
    m = measure_slices(positions, orientation)
    if len(m.positions) == 1:  # as highdicom: the slice thickness if known, else 1 mm
        thickness = float(single_spacing or 1.0)
        return _geometry(
            m,
            orientation,
            pixel_spacing,
            m.direction * thickness,
            order=np.zeros(1, dtype=np.int64),
            positions=m.positions,
            spacing=thickness,
            findings=[],
            policy=policy,
        )
    _refuse_duplicates(m, where)
    j = _judge(m, rtol, perpendicular_tol)
    _refuse(j, policy, len(m.positions), where)
    if policy is GeometryPolicy.POSITIONS and not j.tilt and (j.uniform or j.whole):
        j = _off_grid(m, j, rtol)
    findings = j.findings
    if policy is GeometryPolicy.POSITIONS and (j.tilt or not (j.uniform or j.whole)):
        # one index per real slice; the affine holds the first slice and the mean step
        step = m.mean_step
        findings.append(
            "irregular stack kept with its real positions: the affine's slice axis is the "
            f"mean step {_fmt(step)} mm, slice k lies at positions[k]"
        )
        spacing = float(np.linalg.norm(step))
        return _geometry(
            m,
            orientation,
            pixel_spacing,
            step,
            spacing=spacing,
            findings=findings,
            policy=policy,
            regular=False,
        )
    if j.tilt:  # SHEAR: the real mean step
        step = m.mean_step
        spacing = float(np.linalg.norm(step))
        return _geometry(
            m, orientation, pixel_spacing, step, spacing=spacing, findings=findings, policy=policy
        )
    if j.uniform:
        return _geometry(
            m,
            orientation,
            pixel_spacing,
            m.direction * m.mean,
            spacing=m.mean,
            findings=findings,
            policy=policy,
        )
    # POSITIONS, missing slices: a regular grid on the smallest spacing
    return _with_gaps(m, orientation, pixel_spacing, findings=findings, policy=policy)


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
