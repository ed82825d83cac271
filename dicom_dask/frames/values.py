"""Read a few attribute values straight from pydicom's raw elements.

pydicom converts a raw element into a ``DataElement`` on first access, which costs
more than parsing the header itself when hundreds of files are opened. For the
handful of numeric and code-string attributes that locate pixels and slices, the
raw bytes are parsed here; anything else (implicit VR, other VRs, values already
converted) goes through pydicom.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicom_dask.compat import raw_element

__all__ = ["fast_get"]

_TAGS: dict[str, int] = {}


def _text(value: bytes) -> list[str]:
    return [part.strip(" \x00") for part in value.decode("ascii").split("\\")]


def _numbers(value: bytes, kind: type) -> Any:
    parts = [kind(p) for p in _text(value) if p]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts


#: Binary VRs: struct format and size of one value.
_BINARY = {
    "US": ("H", 2),
    "SS": ("h", 2),
    "UL": ("L", 4),
    "SL": ("l", 4),
    "FL": ("f", 4),
    "FD": ("d", 8),
}


def _binary(value: bytes, vr: str, little: bool) -> Any:
    code, size = _BINARY[vr]
    n = len(value) // size  # an empty value never comes here
    if len(value) % size:
        return _BAD  # pydicom decides what a ragged value is
    parts = struct.unpack(("<" if little else ">") + code * n, value)
    return parts[0] if n == 1 else list(parts)


_BAD = object()
#: The VRs read here; others go through pydicom.
_FAST = frozenset({*_BINARY, "DS", "IS", "UI", "CS"})


def fast_get(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)`` for binary numbers (US, SS, UL, SL, FL, FD), IS,
    DS, CS and UI values, without pydicom's conversion.

    Multi-valued numbers and codes come back as a list; an empty value as ``default``;
    other VRs, and values pydicom would read differently, through ``ds.get``.
    """
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            raise KeyError(keyword)
        tag = _TAGS[keyword] = int(found)
    elem = raw_element(ds, tag)  # the raw element, unconverted
    if elem is None:
        return default
    if isinstance(elem, RawDataElement) and elem.VR in _FAST:
        vr, raw = elem.VR, elem.value
        if not raw:
            return default
        try:
            if vr in _BINARY:
                value = _binary(raw, vr, elem.is_little_endian)
                if value is _BAD:
                    return _get(ds, keyword, default)
            elif vr == "DS":
                value = _numbers(raw, float)
            elif vr == "IS":
                value = _numbers(raw, lambda s: int(float(s)))  # type: ignore[arg-type]
            elif vr == "UI":
                value = raw.decode("ascii").strip(" \x00") or None
            else:  # CS; positions matter: keep empty components of a multi-value
                parts = _text(raw)
                value = (parts[0] or None) if len(parts) == 1 else parts
        except (ValueError, UnicodeDecodeError, struct.error):
            return _get(ds, keyword, default)  # let pydicom decide what a bad value is
        return default if value is None else value
    return _get(ds, keyword, default)


def _get(ds: Dataset, keyword: str, default: Any) -> Any:
    """pydicom's value, ``default`` for an empty one (as for raw values)."""
    value = ds.get(keyword, default)
    return default if value is None else value
