"""Per-frame functional groups as compact arrays, parsed once.

A TILED_SPARSE slide level stores one Per-Frame Functional Groups item per tile
(100,000 items are common). Turning each into a pydicom ``Dataset`` takes minutes,
so the few attributes needed to place a tile are located in the raw bytes of the
sequence instead: a fixed element header (tag, VR, length) is searched for, and
the matches are validated against the enclosing Plane Position (Slide) items, one
per frame, in order. Anything unexpected (implicit VR without lengths, big endian,
counts that do not line up) falls back to pydicom's full parse, which is exact.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicom_dask.errors import InvalidHeaderError

__all__ = ["SlidePositions", "per_frame_raw", "slide_positions"]

PER_FRAME_TAG = 0x52009230


@dataclass(frozen=True, eq=False)
class SlidePositions:
    """Where each frame of a tiled image lies.

    Attributes
    ----------
    rows, columns : numpy.ndarray
        1-based Row/Column Position In Total Image Pixel Matrix of each frame (int64).
    z_offsets : numpy.ndarray or None
        Z Offset in Slide Coordinate System (µm) per frame, when given per frame.
    channels : numpy.ndarray or None
        Optical Path Identifier (str) or Referenced Segment Number per frame, when
        given per frame.
    method : str
        ``"scan"`` (raw byte search) or ``"pydicom"``.
    """

    rows: np.ndarray
    columns: np.ndarray
    z_offsets: np.ndarray | None
    channels: np.ndarray | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for index sidecars)."""
        return {
            "rows": self.rows.tolist(),
            "columns": self.columns.tolist(),
            "z_offsets": None if self.z_offsets is None else self.z_offsets.tolist(),
            "channels": None if self.channels is None else self.channels.tolist(),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SlidePositions:
        """Inverse of `to_dict`."""
        z, ch = doc.get("z_offsets"), doc.get("channels")
        return cls(
            rows=np.asarray(doc["rows"], dtype=np.int64),
            columns=np.asarray(doc["columns"], dtype=np.int64),
            z_offsets=None if z is None else np.asarray(z, dtype=np.float64),
            channels=None if ch is None else np.asarray(ch, dtype=object),
            method=str(doc.get("method", "index")),
        )


def per_frame_raw(ds: Dataset) -> RawDataElement | None:
    """The Per-Frame Functional Groups Sequence of ``ds`` if still unparsed, else None."""
    if PER_FRAME_TAG not in ds:
        return None
    elem = ds.get_item(PER_FRAME_TAG)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes | bytearray):
        return elem
    return None


# element headers searched for, explicit VR little endian: tag + VR (+ length)
_EXPLICIT = {
    "plane": re.compile(re.escape(b"\x48\x00\x1a\x02SQ\x00\x00")),
    "row": re.compile(re.escape(b"\x48\x00\x1f\x02SL\x04\x00")),
    "col": re.compile(re.escape(b"\x48\x00\x1e\x02SL\x04\x00")),
    "z": re.compile(re.escape(b"\x40\x00\x4a\x07DS"), re.DOTALL),
    "path": re.compile(re.escape(b"\x48\x00\x06\x01SH"), re.DOTALL),
    "segment": re.compile(re.escape(b"\x62\x00\x0b\x00US\x02\x00")),
}
_IMPLICIT = {
    "plane": re.compile(re.escape(b"\x48\x00\x1a\x02")),
    "row": re.compile(re.escape(b"\x48\x00\x1f\x02\x04\x00\x00\x00")),
    "col": re.compile(re.escape(b"\x48\x00\x1e\x02\x04\x00\x00\x00")),
    "z": re.compile(re.escape(b"\x40\x00\x4a\x07"), re.DOTALL),
    "path": re.compile(re.escape(b"\x48\x00\x06\x01"), re.DOTALL),
    "segment": re.compile(re.escape(b"\x62\x00\x0b\x00\x02\x00\x00\x00")),
}


def _starts(pattern: re.Pattern[bytes], value: bytes) -> np.ndarray:
    return np.fromiter((m.start() for m in pattern.finditer(value)), dtype=np.int64)


def _strings(value: bytes, starts: np.ndarray, header: int, length_fmt: str) -> list[str]:
    size = struct.calcsize(length_fmt)
    out = []
    for s in starts.tolist():
        (n,) = struct.unpack_from(length_fmt, value, s + header - size)
        out.append(value[s + header : s + header + n].decode("ascii", "replace").strip(" \x00"))
    return out


def _in_frames(starts: np.ndarray, bounds: np.ndarray) -> bool:
    """Whether the k-th match lies in frame k, frame k spanning ``bounds[k]..bounds[k+1]``."""
    frame_of = np.searchsorted(bounds, starts, side="right") - 1
    return bool(np.array_equal(frame_of, np.arange(len(starts))))


def _scan(elem: RawDataElement, n: int) -> SlidePositions | None:
    value = bytes(elem.value or b"")
    if not elem.is_little_endian:
        return None
    pats = _IMPLICIT if elem.is_implicit_VR else _EXPLICIT
    plane = _starts(pats["plane"], value)
    rows, cols = _starts(pats["row"], value), _starts(pats["col"], value)
    if not (len(plane) == len(rows) == len(cols) == n):
        return None
    # frame k's attributes sit between the start of its item and the next frame's
    # Plane Position item; check that every match lies in its own frame
    bounds = np.concatenate([[0], plane[1:], [len(value) + 1]])
    if not (_in_frames(rows, bounds) and _in_frames(cols, bounds)):
        return None
    header = 8
    row_values = np.array([struct.unpack_from("<l", value, s + header)[0] for s in rows.tolist()])
    col_values = np.array([struct.unpack_from("<l", value, s + header)[0] for s in cols.tolist()])
    z = _starts(pats["z"], value)
    z_values = None
    if len(z) == n and _in_frames(z, bounds):
        fmt = "<L" if elem.is_implicit_VR else "<H"
        text = _strings(value, z, 8, fmt)
        try:
            z_values = np.array([float(t) for t in text], dtype=np.float64)
        except ValueError:
            return None
    elif len(z):
        return None
    channels: np.ndarray | None = None
    paths = _starts(pats["path"], value)
    segments = _starts(pats["segment"], value)
    # the identification sequences precede Plane Position (Slide) in each item
    prev_bounds = np.concatenate([[-1], plane[:-1] + 1, [len(value) + 1]])
    if len(paths) == n and (_in_frames(paths, prev_bounds) or _in_frames(paths, bounds)):
        fmt = "<L" if elem.is_implicit_VR else "<H"
        channels = np.array(_strings(value, paths, 8, fmt), dtype=object)
    elif len(paths):
        return None
    if len(segments) == n:
        channels = np.array(
            [struct.unpack_from("<H", value, s + 8)[0] for s in segments.tolist()], dtype=object
        )
    elif len(segments):
        return None
    return SlidePositions(row_values, col_values, z_values, channels, "scan")


def _parse(ds: Dataset, n: int, url: str) -> SlidePositions:
    try:
        return _parse_items(ds, n, url)
    except (InvalidHeaderError, MemoryError):
        raise
    except Exception as exc:  # pydicom raises many kinds on a malformed sequence
        raise InvalidHeaderError(
            f"{url}: the (5200,9230) Per-Frame Functional Groups Sequence cannot be parsed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _parse_items(ds: Dataset, n: int, url: str) -> SlidePositions:
    items = ds.get("PerFrameFunctionalGroupsSequence")
    if items is None or len(items) != n:
        got = "none" if items is None else len(items)
        raise InvalidHeaderError(
            f"{url}: TILED_SPARSE needs one (5200,9230) Per-Frame Functional Groups item per "
            f"frame: expected {n}, found {got}"
        )
    rows = np.zeros(n, dtype=np.int64)
    cols = np.zeros(n, dtype=np.int64)
    z = np.full(n, np.nan)
    channels: list[Any] = []
    for k, item in enumerate(items):
        pos = item.get("PlanePositionSlideSequence")
        if not pos:
            raise InvalidHeaderError(
                f"{url}: frame {k + 1}: (0048,021A) Plane Position (Slide) Sequence is missing "
                "from its Per-Frame Functional Groups item"
            )
        p = pos[0]
        try:
            rows[k] = int(p.RowPositionInTotalImagePixelMatrix)
            cols[k] = int(p.ColumnPositionInTotalImagePixelMatrix)
        except AttributeError as exc:
            raise InvalidHeaderError(
                f"{url}: frame {k + 1}: Plane Position (Slide) lacks (0048,021F)/(0048,021E) "
                f"Row/Column Position In Total Image Pixel Matrix: {exc}"
            ) from None
        if p.get("ZOffsetInSlideCoordinateSystem") is not None:
            z[k] = float(p.ZOffsetInSlideCoordinateSystem)
        if "OpticalPathIdentificationSequence" in item:
            channels.append(str(item.OpticalPathIdentificationSequence[0].OpticalPathIdentifier))
        elif "SegmentIdentificationSequence" in item:
            channels.append(int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber))
    return SlidePositions(
        rows,
        cols,
        None if np.isnan(z).all() else z,
        np.array(channels, dtype=object) if len(channels) == n else None,
        "pydicom",
    )


def slide_positions(ds: Dataset, *, url: str, number_of_frames: int) -> SlidePositions:
    """Read each frame's tile position from the Per-Frame Functional Groups of ``ds``.

    Raises
    ------
    InvalidHeaderError
        When the sequence is missing, has the wrong number of items, or an item
        has no Plane Position (Slide).
    """
    raw = per_frame_raw(ds)
    if raw is not None:
        found = _scan(raw, number_of_frames)
        if found is not None:
            return found
    return _parse(ds, number_of_frames, url)
