"""Synthetic files laid out the way real-world writers lay them out.

Each writer reproduces the structure of a kind of public real file that dicom_dask
once refused (issue 16), with pydicom, small enough for a test:

* [`write_dose`][dicom_dask.testing.realworld.write_dose]: an RT Dose grid (Dose Grid
  Scaling, Grid Frame Offset Vector), as treatment planning systems write it;
* [`write_dwi_series`][dicom_dask.testing.realworld.write_dwi_series]: a diffusion
  series whose b-values and gradient directions exist only in vendor private tags
  (GE, Siemens, Philips), several volumes at the same positions;
* [`write_fmri_series`][dicom_dask.testing.realworld.write_fmri_series]: an fMRI
  series with repeated positions and only Acquisition Time / Instance Number;
* [`write_magnitude_phase_series`][dicom_dask.testing.realworld.write_magnitude_phase_series]:
  magnitude and phase images in one series (Image Type M / P);
* [`make_enhanced_dti_dataset`][dicom_dask.testing.realworld.make_enhanced_dti_dataset]:
  an Enhanced MR Image whose frames carry MR Diffusion functional groups;
* [`write_pyramid_per_level_for`][dicom_dask.testing.realworld.write_pyramid_per_level_for]:
  a whole-slide pyramid with one Frame of Reference per level.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset

from dicom_dask.testing.synthetic import make_dataset, make_slide_dataset, write_slide

__all__ = [
    "make_overlapping_sparse_slide",
    "write_dose",
    "write_pyramid_per_level_for",
]

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_dose(
    path: str | os.PathLike[str],
    grid: np.ndarray,
    *,
    scaling: float = 2.5e-5,
    units: str = "GY",
    offsets: Sequence[float] | None = None,
    pixel_spacing: Sequence[float] = (2.5, 2.5),
    origin: Sequence[float] = (-50.0, -60.0, -20.0),
) -> str:
    """An RT Dose file holding ``grid`` ``(frames, rows, columns)`` (uint16 or uint32)."""
    grid = np.asarray(grid)
    ds = make_dataset(grid)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _uid.UID(RT_DOSE_STORAGE)
    ds.Modality = "RTDOSE"
    ds.FrameOfReferenceUID = _uid.generate_uid()
    ds.DoseUnits = units
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseGridScaling = f"{scaling:.6g}"
    ds.ImagePositionPatient = [float(v) for v in origin]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = ""
    ds.FrameIncrementPointer = 0x3004000C
    gaps = list(offsets) if offsets is not None else [3.0 * k for k in range(len(grid))]
    ds.GridFrameOffsetVector = [float(g) for g in gaps]
    ds.save_as(os.fspath(path), enforce_file_format=True)
    return os.fspath(path)


def make_overlapping_sparse_slide(
    matrix: np.ndarray,
    overlay: np.ndarray,
    tiles: Sequence[tuple[int, int]],
    *,
    tile: tuple[int, int] = (32, 32),
    transfer_syntax: str = _uid.JPEGBaseline8Bit,
    **kwargs: Any,
) -> Dataset:
    """A TILED_SPARSE slide whose frames cover some tiles twice.

    The frames of ``matrix`` (every tile, in order) come first, then the frames of
    ``overlay`` (same shape) at the tile positions ``tiles`` ``(tile row, tile
    column)``, as a scanner that re-acquires tiles appends them. Drawn in frame order,
    the total pixel matrix is ``matrix`` with those tiles taken from ``overlay``.
    """
    from pydicom.encaps import encapsulate, generate_frames

    base = make_slide_dataset(
        matrix, tile=tile, organization="TILED_SPARSE", transfer_syntax=transfer_syntax, **kwargs
    )
    over = make_slide_dataset(
        overlay, tile=tile, organization="TILED_SPARSE", transfer_syntax=transfer_syntax, **kwargs
    )
    columns = -(-matrix.shape[1] // tile[1])
    picked = [r * columns + c for r, c in tiles]
    n = int(base.NumberOfFrames)
    if _uid.UID(transfer_syntax).is_encapsulated:
        frames = list(generate_frames(base.PixelData, number_of_frames=n))
        extra = list(generate_frames(over.PixelData, number_of_frames=n))
        base.PixelData = encapsulate(frames + [extra[k] for k in picked], has_bot=True)
        base["PixelData"].is_undefined_length = True
    else:
        size = len(base.PixelData) // n
        chunks = [over.PixelData[k * size : (k + 1) * size] for k in picked]
        base.PixelData = base.PixelData[: n * size] + b"".join(chunks)
    base.PerFrameFunctionalGroupsSequence = list(base.PerFrameFunctionalGroupsSequence) + [
        over.PerFrameFunctionalGroupsSequence[k] for k in picked
    ]
    base.NumberOfFrames = n + len(picked)
    return base


def write_pyramid_per_level_for(
    folder: str | os.PathLike[str],
    matrix: np.ndarray,
    *,
    levels: int = 4,
    tile: tuple[int, int] = (64, 64),
    pixel_spacing: float = 0.00025,
    origin: tuple[float, float] = (20.0, 40.0),
    transfer_syntax: str = _uid.JPEGBaseline8Bit,
    series_uid: str | None = None,
    container_id: str = "SLIDE-1",
    shared_frame_of_reference: bool = False,
) -> list[str]:
    """A pyramid written one file per level, each level with its own Frame of Reference.

    As some converters write it: one Study and Series, one Container Identifier,
    consistent pixel spacing (doubling per level) and origin, but a new Frame of
    Reference UID for every level (``shared_frame_of_reference`` writes one).
    Level ``k`` is ``matrix[::2**k, ::2**k]``.
    """
    os.makedirs(folder, exist_ok=True)
    study = _uid.generate_uid()
    series = series_uid or _uid.generate_uid()
    shared = _uid.generate_uid()
    paths = []
    for k in range(levels):
        path = os.path.join(os.fspath(folder), f"level{k}.dcm")
        write_slide(
            path,
            matrix[:: 2**k, :: 2**k],
            tile=tile,
            transfer_syntax=transfer_syntax,
            pixel_spacing=pixel_spacing * 2**k,
            origin=origin,
            container_id=container_id,
            frame_of_reference=shared if shared_frame_of_reference else _uid.generate_uid(),
            study_uid=study,
            series_uid=series,
        )
        paths.append(path)
    return paths
