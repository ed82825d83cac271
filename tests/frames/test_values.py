"""``fast_get`` reads raw values as pydicom's ``Dataset.get`` does, on every real header."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_dask.frames.values import fast_get
from tests.conftest import REAL, REFERENCE

HERE = Path(__file__).resolve().parent
FILES = [REAL / f["path"] for f in REFERENCE["files"]]
FILES += sorted(
    p
    for p in (HERE / "data").rglob("*")
    if p.is_file()
    and p.suffix not in (".md", ".bval", ".bvec", ".json")
    and "LICENSE" not in p.name
)
FAST_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "IS", "DS", "CS", "UI"}


def _plain(value: Any) -> Any:
    """pydicom's value as fast_get gives it: lists for several values, plain numbers."""
    if isinstance(value, MultiValue | list):
        return [_plain(v) for v in value]
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, str):
        return str(value)
    return value


def _raw_datasets(ds: Dataset, depth: int = 0) -> list[Dataset]:
    """``ds`` and the items of its sequences (two levels), each read again from the raw
    bytes so that their elements are still unconverted."""
    out = [ds]
    if depth >= 2:
        return out
    for tag, elem in list(ds._dict.items()):  # only the sequences are converted
        if elem.VR == "SQ":
            for item in ds[tag].value:
                out.extend(_raw_datasets(item, depth + 1))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fast_get_equals_pydicom(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found")
    try:
        fresh = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        converted = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # not a readable header: nothing to compare
        pytest.skip(f"pydicom cannot read the header: {exc}")
    raw_sets = _raw_datasets(fresh)
    ref_sets = _raw_datasets(converted)
    assert len(raw_sets) == len(ref_sets)
    compared = 0
    for raw_ds, ref_ds in zip(raw_sets, ref_sets, strict=True):
        for tag in list(raw_ds._dict):
            elem = raw_ds._dict[tag]
            if not isinstance(elem, RawDataElement) or elem.VR not in FAST_VRS:
                continue
            keyword = keyword_for_tag(tag)
            if not keyword or pydicom.datadict.tag_for_keyword(keyword) != tag:
                continue  # private, unknown or a repeating group: not reached by keyword
            try:
                expected = ref_ds.get(keyword, "default")
            except (ValueError, struct.error):
                continue  # pydicom itself refuses the value
            if (
                expected is not None
                and not isinstance(expected, str | int | float)
                and not (isinstance(expected, MultiValue))
            ):
                continue
            expected = _plain(expected)
            if expected in (None, "", []):
                expected = "default"  # fast_get returns the default for an empty value
            got = _plain(fast_get(raw_ds, keyword, "default"))
            if isinstance(expected, list) and elem.VR == "CS":
                expected = [str(v).strip() for v in expected]
            elif isinstance(expected, str) and elem.VR in ("CS", "UI"):
                expected = expected.strip(" \x00")
            assert got == expected, f"{path.name} {keyword} ({elem.VR}): {got!r} != {expected!r}"
            compared += 1
    if not compared:
        pytest.skip("no raw element of a fast VR")


def test_fast_get_binary_values() -> None:
    ds = Dataset()
    for keyword, vr, value, fmt in [
        ("Rows", "US", 512, "<H"),
        ("TotalPixelMatrixRows", "UL", 70000, "<L"),
        ("ImagedVolumeWidth", "FL", 12.5, "<f"),
        ("SmallestImagePixelValue", "SS", -7, "<h"),
    ]:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        ds._dict[pydicom.tag.BaseTag(tag)] = RawDataElement(
            pydicom.tag.BaseTag(tag), vr, 0, struct.pack(fmt, value), 0, False, True
        )
        assert fast_get(ds, keyword) == value
    tag = pydicom.tag.BaseTag(pydicom.datadict.tag_for_keyword("Columns"))
    ds._dict[tag] = RawDataElement(tag, "US", 4, struct.pack("<HH", 3, 4), 0, False, True)
    assert fast_get(ds, "Columns") == [3, 4]
    ds._dict[tag] = RawDataElement(tag, "US", 0, b"", 0, False, True)
    assert fast_get(ds, "Columns", "none") == "none"
