"""What tells apart the volumes of an MR series acquired at the same slice positions.

Per image (a single-frame file, or a frame of an enhanced file): the diffusion
b-value and gradient direction, the complex component (magnitude, phase, real,
imaginary), and the acquisition time. Standard attributes come first (MR Diffusion
sequence, (0018,9087) Diffusion b-value, (0008,9208) Complex Image Component); the
vendor private elements dcm2niix reads are the fallback, read at their usual fixed
tags and only for the vendor named in (0008,0070) Manufacturer:

* GE: (0043,1039) b-value (first value; values above 1e9 carry a flag, kept modulo
  1e9 as dcm2niix does), gradient (0019,10BB/10BC/10BD), complex component
  (0043,102F) 0-3;
* Siemens: (0019,100C) b-value, (0019,100E) gradient direction;
* Philips: (2001,1003) b-value, gradient (2005,10B0/10B1/10B2).

Nothing here imports dask.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

__all__ = ["ImageFacts", "image_facts"]

#: Complex components as the standard names them ((0008,9208)).
COMPONENTS = {
    "M": "MAGNITUDE",
    "MAGNITUDE": "MAGNITUDE",
    "P": "PHASE",
    "PHASE": "PHASE",
    "PHASE MAP": "PHASE",
    "R": "REAL",
    "REAL": "REAL",
    "I": "IMAGINARY",
    "IMAGINARY": "IMAGINARY",
}
_GE_COMPONENTS = {0: "MAGNITUDE", 1: "PHASE", 2: "REAL", 3: "IMAGINARY"}


@dataclass(frozen=True)
class ImageFacts:
    """What tells an image from the other volumes at its position.

    Attributes
    ----------
    image_type : str
        Complex component (``MAGNITUDE``, ``PHASE``, ``REAL``, ``IMAGINARY``), else
        the Image Type values joined by ``\\``.
    b_value : float or None
        Diffusion b-value (s/mm²).
    gradient : (float, float, float) or None
        Diffusion gradient direction, as stored.
    time : float or None
        Acquisition time in seconds (since midnight, or since the epoch for a Frame
        Acquisition DateTime).
    """

    image_type: str = ""
    b_value: float | None = None
    gradient: tuple[float, float, float] | None = None
    time: float | None = None


def _raw(ds: Dataset | None, tag: int) -> Any:
    """A value, or the raw bytes of an element pydicom does not know (VR UN)."""
    if ds is None:
        return None
    elem = ds.get(BaseTag(tag))
    if elem is None:
        return None
    try:
        return elem.value
    except Exception:  # a malformed value is as good as absent
        return None


def _numbers(value: Any, binary: str | None = None) -> list[float]:
    """Numbers of a DS/IS/FL/FD value, also from bytes (VR UN in implicit VR files)."""
    if value is None or value == "":
        return []
    if isinstance(value, bytes | bytearray):
        if binary is not None and len(value) % struct.calcsize(binary) == 0:
            n = len(value) // struct.calcsize(binary)
            return [float(v) for v in struct.unpack("<" + binary * n, value)]
        try:
            text = value.decode("ascii").strip(" \x00")
        except UnicodeDecodeError:
            return []
        parts = [p.strip(" \x00") for p in text.split("\\")]
        try:
            return [float(p) for p in parts if p]
        except ValueError:
            return []
    if isinstance(value, str | int | float):
        try:
            return [float(value)]
        except ValueError:
            return []
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return []


def _item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _seconds(tm: Any) -> float | None:
    """``HHMMSS.ffffff`` -> seconds since midnight."""
    text = str(tm or "").strip()
    if len(text) < 2 or not text[:2].isdigit():
        return None
    try:
        hours = int(text[0:2])
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds


def _datetime_seconds(dt: Any) -> float | None:
    text = str(dt or "").strip()
    if len(text) < 8:
        return None
    from datetime import UTC, datetime

    try:
        day = datetime.strptime(text[:8], "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    rest = text[8:].split("+")[0].split("-")[0]
    return day.timestamp() + (_seconds(rest) or 0.0)


def _component(ds: Dataset, frame: Dataset | None, shared: Dataset | None, vendor: str) -> str:
    for source in (
        _item(frame, "MRImageFrameTypeSequence"),
        _item(shared, "MRImageFrameTypeSequence"),
        ds,
    ):
        value = source.get("ComplexImageComponent") if source is not None else None
        if value not in (None, ""):
            return COMPONENTS.get(str(value).upper(), str(value).upper())
    if vendor == "GE":
        number = _numbers(_raw(ds, 0x0043102F), "h")
        if number and int(number[0]) in _GE_COMPONENTS:
            return _GE_COMPONENTS[int(number[0])]
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    for value in image_type[2:]:
        if value in COMPONENTS:
            return COMPONENTS[value]
    for value in image_type[2:]:  # Philips: M_FFE, P_SE, R_IR...
        head = value.split("_")[0]
        if head in ("M", "P", "R", "I") and "_" in value:
            return COMPONENTS[head]
    return "\\".join(image_type)


def _vendor(ds: Dataset) -> str:
    maker = str(ds.get("Manufacturer", "") or "").upper()
    for name in ("GE", "SIEMENS", "PHILIPS"):
        if name in maker:
            return name
    return ""


def _diffusion(
    ds: Dataset, frame: Dataset | None, shared: Dataset | None, vendor: str
) -> tuple[float | None, tuple[float, float, float] | None]:
    b: float | None = None
    gradient: tuple[float, float, float] | None = None
    for source in (
        _item(frame, "MRDiffusionSequence"),
        _item(shared, "MRDiffusionSequence"),
        _item(ds, "MRDiffusionSequence"),
        ds,
    ):
        if source is None:
            continue
        values = _numbers(source.get("DiffusionBValue"), "d")
        if values and b is None:
            b = values[0]
        direction = _item(source, "DiffusionGradientDirectionSequence")
        g = _numbers(direction.get("DiffusionGradientOrientation") if direction else None, "d")
        if len(g) == 3 and gradient is None:
            gradient = (g[0], g[1], g[2])
        if gradient is None:  # some writers put it outside its sequence
            g = _numbers(source.get("DiffusionGradientOrientation"), "d")
            gradient = (g[0], g[1], g[2]) if len(g) == 3 else None
    if b is not None and gradient is not None:
        return b, gradient
    # vendor elements fill what the standard ones leave out
    vb: float | None = None
    vg: list[float] = []
    if vendor == "GE":
        values = _numbers(_raw(ds, 0x00431039), None)
        if values:
            vb = values[0] % 1e9 if values[0] >= 1e9 else values[0]
        parts = [_numbers(_raw(ds, t), None) for t in (0x001910BB, 0x001910BC, 0x001910BD)]
        vg = [p[0] for p in parts] if all(parts) else []
    elif vendor == "SIEMENS":
        values = _numbers(_raw(ds, 0x0019100C), None)
        vb = values[0] if values else None
        vg = _numbers(_raw(ds, 0x0019100E), "d")
    elif vendor == "PHILIPS":
        values = _numbers(_raw(ds, 0x20011003), "f")
        vb = values[0] if values else None
        parts = [_numbers(_raw(ds, t), "f") for t in (0x200510B0, 0x200510B1, 0x200510B2)]
        vg = [p[0] for p in parts] if all(parts) else []
    if b is None:
        b = vb
    if gradient is None and b is not None and len(vg) == 3:
        gradient = (vg[0], vg[1], vg[2])
    return b, gradient


def image_facts(
    ds: Dataset, frame: Dataset | None = None, shared: Dataset | None = None
) -> ImageFacts:
    """What tells this image (or the frame of ``ds`` whose Per-Frame and Shared
    Functional Groups items are ``frame`` and ``shared``) from the other volumes at
    its position: complex component, diffusion, acquisition time."""
    vendor = _vendor(ds)
    b, gradient = _diffusion(ds, frame, shared, vendor)
    time = None
    content = _item(frame, "FrameContentSequence")
    if content is not None:
        time = _datetime_seconds(content.get("FrameAcquisitionDateTime"))
    if time is None:
        time = _seconds(ds.get("AcquisitionTime")) if frame is None else None
    if time is None and frame is None:
        time = _datetime_seconds(ds.get("AcquisitionDateTime")) or _seconds(ds.get("ContentTime"))
    return ImageFacts(_component(ds, frame, shared, vendor), b, gradient, time)
