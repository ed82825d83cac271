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

from dicom_dask.testing.synthetic import (
    make_dataset,
    make_enhanced_dataset,
    make_slide_dataset,
    write_slide,
)

__all__ = [
    "make_enhanced_dti_dataset",
    "make_overlapping_sparse_slide",
    "write_dose",
    "write_dwi_series",
    "write_fmri_series",
    "write_magnitude_phase_series",
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


def _mr_file(
    path: str,
    pixels: np.ndarray,
    *,
    position: Sequence[float],
    series: dict[str, str],
    attrs: dict[str, Any],
    implicit: bool = False,
) -> str:
    """One single-frame MR Image file at ``position`` (axial, 1 x 1.2 mm pixels)."""
    ds = make_dataset(pixels[None])
    del ds.NumberOfFrames
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _uid.UID(MR_IMAGE_STORAGE)
    ds.Modality = "MR"
    ds.StudyInstanceUID = series["study"]
    ds.SeriesInstanceUID = series["series"]
    ds.FrameOfReferenceUID = series["frame_of_reference"]
    ds.ImagePositionPatient = [round(float(v), 6) for v in position]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.0, 1.2]
    ds.SliceThickness = 3.0
    for keyword, value in attrs.items():
        if keyword == "private":
            for group, creator, element, vr, val in value:
                ds.private_block(group, creator, create=True).add_new(element, vr, val)
        else:
            setattr(ds, keyword, value)
    if implicit:
        ds.file_meta.TransferSyntaxUID = _uid.ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return path


def _series_uids() -> dict[str, str]:
    return {
        "study": _uid.generate_uid(),
        "series": _uid.generate_uid(),
        "frame_of_reference": _uid.generate_uid(),
    }


def _slice_positions(slices: int, spacing: float = 3.0) -> np.ndarray:
    return np.array([[-60.0, -80.0, -20.0 + spacing * k] for k in range(slices)])


def write_dwi_series(
    folder: str | os.PathLike[str],
    data: np.ndarray,
    *,
    b_values: Sequence[float],
    directions: Sequence[Sequence[float]],
    vendor: str = "GE",
) -> list[dict[str, Any]]:
    """A diffusion series, one file per slice and volume, diffusion only in private tags.

    ``data`` is ``(volumes, slices, rows, columns)`` int16. As GE writes it (the
    default): Implicit VR Little Endian, (0043,1039) b-value (with 1e9 added to
    non-zero b-values, as GE flags them), gradient in (0019,10BB/10BC/10BD), one
    Acquisition Time and Number for the whole series, Instance Numbers volume after
    volume, no Temporal Position Identifier. ``vendor="SIEMENS"`` writes (0019,100C)
    / (0019,100E), ``"PHILIPS"`` (2001,1003) / (2005,10B0-10B2).

    Returns one record per file: ``path``, ``volume``, ``slice``, ``position``.
    """
    os.makedirs(folder, exist_ok=True)
    uids = _series_uids()
    volumes, slices = data.shape[:2]
    positions = _slice_positions(slices)
    out = []
    for v in range(volumes):
        b = float(b_values[v])
        g = [float(x) for x in directions[v]]
        private: list[tuple[int, str, int, str, Any]]
        if vendor == "GE":
            flagged = b + 1e9 if b > 0 else b
            private = [
                (0x0043, "GEMS_PARM_01", 0x39, "IS", [f"{flagged:.0f}", "8", "0", "0"]),
                (0x0019, "GEMS_ACQU_01", 0xBB, "DS", f"{g[0]:.6f}"),
                (0x0019, "GEMS_ACQU_01", 0xBC, "DS", f"{g[1]:.6f}"),
                (0x0019, "GEMS_ACQU_01", 0xBD, "DS", f"{g[2]:.6f}"),
            ]
            maker = "GE MEDICAL SYSTEMS"
        elif vendor == "SIEMENS":
            private = [
                (0x0019, "SIEMENS MR HEADER", 0x0C, "IS", f"{b:.0f}"),
                (0x0019, "SIEMENS MR HEADER", 0x0E, "FD", g),
            ]
            maker = "SIEMENS"
        else:
            private = [
                (0x2001, "Philips Imaging DD 001", 0x03, "FL", b),
                (0x2005, "Philips MR Imaging DD 001", 0xB0, "FL", g[0]),
                (0x2005, "Philips MR Imaging DD 001", 0xB1, "FL", g[1]),
                (0x2005, "Philips MR Imaging DD 001", 0xB2, "FL", g[2]),
            ]
            maker = "Philips Medical Systems"
        for k in range(slices):
            path = os.path.join(os.fspath(folder), f"IM{v * slices + k + 1:05d}.dcm")
            attrs = {
                "Manufacturer": maker,
                "AcquisitionTime": "101500.000000",
                "AcquisitionNumber": 1,
                "InstanceNumber": v * slices + k + 1,
                "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"],
                "private": private,
            }
            _mr_file(
                path,
                data[v, k],
                position=positions[k],
                series=uids,
                attrs=attrs,
                implicit=vendor == "GE",
            )
            out.append({"path": path, "volume": v, "slice": k, "position": positions[k]})
    return out


def write_fmri_series(
    folder: str | os.PathLike[str],
    data: np.ndarray,
    *,
    repetition_time: float = 2.0,
    instance_numbers: bool = False,
) -> list[dict[str, Any]]:
    """An fMRI (BOLD) series: ``data`` ``(volumes, slices, rows, columns)``, one file
    per slice and volume, the same positions in every volume, no Temporal Position
    Identifier and no Acquisition Number: only Acquisition Time (interleaved slice
    timing within each repetition). Instance Numbers are left out unless
    ``instance_numbers`` (then numbered against time, to show they are not used
    when times exist). File names are shuffled."""
    os.makedirs(folder, exist_ok=True)
    uids = _series_uids()
    volumes, slices = data.shape[:2]
    positions = _slice_positions(slices)
    slice_order = list(range(0, slices, 2)) + list(range(1, slices, 2))
    names = np.random.default_rng(7).permutation(volumes * slices)
    out = []
    for v in range(volumes):
        for k in range(slices):
            t = 8 * 3600 + 30 * 60 + v * repetition_time
            t += slice_order.index(k) * repetition_time / slices
            hours, rest = divmod(t, 3600)
            minutes, seconds = divmod(rest, 60)
            attrs: dict[str, Any] = {
                "Manufacturer": "SIEMENS",
                "AcquisitionTime": f"{int(hours):02d}{int(minutes):02d}{seconds:09.6f}",
                "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"],
            }
            if instance_numbers:
                attrs["InstanceNumber"] = volumes * slices - (v * slices + k)
            path = os.path.join(os.fspath(folder), f"f{names[v * slices + k]:05d}.dcm")
            _mr_file(path, data[v, k], position=positions[k], series=uids, attrs=attrs)
            out.append({"path": path, "volume": v, "slice": k, "position": positions[k], "time": t})
    return out


def write_magnitude_phase_series(
    folder: str | os.PathLike[str], magnitude: np.ndarray, phase: np.ndarray
) -> list[dict[str, Any]]:
    """Magnitude and phase images of one acquisition in one series, as Philips writes
    them: Image Type ``ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE`` / ``...\\P_FFE\\P\\FFE``, the
    same positions, times and Acquisition Number. ``magnitude`` / ``phase`` are
    ``(slices, rows, columns)``."""
    os.makedirs(folder, exist_ok=True)
    uids = _series_uids()
    positions = _slice_positions(len(magnitude))
    out = []
    number = 0
    for kind, data in (("M", magnitude), ("P", phase)):
        for k in range(len(data)):
            number += 1
            attrs = {
                "Manufacturer": "Philips Medical Systems",
                "AcquisitionTime": "093000.00",
                "AcquisitionNumber": 2,
                "InstanceNumber": number,
                "ImageType": ["ORIGINAL", "PRIMARY", f"{kind}_FFE", kind, "FFE"],
            }
            path = os.path.join(os.fspath(folder), f"IM_{number:04d}.dcm")
            _mr_file(path, data[k], position=positions[k], series=uids, attrs=attrs)
            out.append({"path": path, "image_type": kind, "slice": k, "position": positions[k]})
    return out


def make_enhanced_dti_dataset(
    data: np.ndarray,
    *,
    b_values: Sequence[float],
    directions: Sequence[Sequence[float] | None],
) -> Dataset:
    """An Enhanced MR Image holding a DTI acquisition, as Philips writes it.

    ``data`` is ``(volumes, slices, rows, columns)``; frames are written slice by
    slice, volumes within each slice. Each frame has an MR Diffusion functional group
    ((0018,9087) b-value, directionality, gradient orientation; ``None`` direction
    for an isotropic b=0 frame) and a Frame Acquisition DateTime; the Dimension Index
    points at In-Stack Position Number, Diffusion b-value and Diffusion Gradient
    Orientation (so b=0 has no direction: not a complete grid).
    """
    volumes, slices = data.shape[:2]
    positions = _slice_positions(slices)
    order = [(k, v) for k in range(slices) for v in range(volumes)]
    frames = np.stack([data[v, k] for k, v in order])
    ds = make_enhanced_dataset(frames, positions=np.array([positions[k] for k, _ in order]))
    ds.Manufacturer = "Philips Medical Systems"
    pointers = [0x00209057, 0x00189087, 0x00189089]
    ds.DimensionIndexSequence = []
    for pointer in pointers:
        item = Dataset()
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x00209111 if pointer == 0x00209057 else 0x00189117
        ds.DimensionIndexSequence.append(item)
    distinct = sorted({tuple(d) for d in directions if d is not None})
    for (k, v), item in zip(order, ds.PerFrameFunctionalGroupsSequence, strict=True):
        diffusion = Dataset()
        diffusion.DiffusionBValue = float(b_values[v])
        direction = directions[v]
        diffusion.DiffusionDirectionality = "ISOTROPIC" if direction is None else "DIRECTIONAL"
        if direction is not None:
            gradient = Dataset()
            gradient.DiffusionGradientOrientation = [float(x) for x in direction]
            diffusion.DiffusionGradientDirectionSequence = [gradient]
        item.MRDiffusionSequence = [diffusion]
        content = item.FrameContentSequence[0]
        seconds = 40 * 60 + v * 4.0 + k * 0.1
        content.FrameAcquisitionDateTime = f"20240102{int(9 + seconds // 3600):02d}" + (
            f"{int(seconds % 3600 // 60):02d}{seconds % 60:09.6f}"
        )
        index = 0 if direction is None else 1 + distinct.index(tuple(direction))
        content.DimensionIndexValues = [k + 1, 1 + sorted(set(b_values)).index(b_values[v]),
                                        index + 1]  # fmt: skip
    return ds
