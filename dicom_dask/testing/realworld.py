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

import numpy as np
from pydicom import uid as _uid

from dicom_dask.testing.synthetic import make_dataset

__all__ = ["write_dose"]

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
