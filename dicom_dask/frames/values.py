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
from pydicom.tag import BaseTag

__all__ = ["fast_get"]

_TAGS: dict[str, int] = {}


def _text(value: bytes) -> list[str]:
    return [part.strip(" \x00") for part in value.decode("ascii").split("\\")]


def _numbers(value: bytes, kind: type) -> Any:
    parts = [kind(p) for p in _text(value) if p]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts


def _unsigned(value: bytes, little: bool) -> Any:
    n = len(value) // 2
    if n == 0:
        return None
    parts = struct.unpack(("<" if little else ">") + "H" * n, value[: 2 * n])
    return parts[0] if n == 1 else list(parts)


def fast_get(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)`` for US, IS, DS, CS and UI values, without conversion.

    Multi-valued numbers come back as a list; an empty value as ``default``.
    """
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            raise KeyError(keyword)
        tag = _TAGS[keyword] = int(found)
    elem = ds._dict.get(BaseTag(tag))  # the raw element, unconverted
    if elem is None:
        return default
    if isinstance(elem, RawDataElement) and elem.value is not None and elem.VR is not None:
        vr = elem.VR
        try:
            if vr == "US":
                value = _unsigned(elem.value, elem.is_little_endian)
            elif vr == "DS":
                value = _numbers(elem.value, float)
            elif vr == "IS":
                value = _numbers(elem.value, lambda s: int(float(s)))  # type: ignore[arg-type]
            elif vr == "UI":
                value = elem.value.decode("ascii").strip(" \x00") or None
            elif vr == "CS":  # positions matter: keep empty components of a multi-value
                parts = _text(elem.value)
                value = (parts[0] or None) if len(parts) == 1 else parts
            else:
                return ds.get(keyword, default)
        except (ValueError, UnicodeDecodeError, struct.error):
            return ds.get(keyword, default)  # let pydicom decide what a bad value is
        return default if value is None else value
    return ds.get(keyword, default)
