"""Patient data out of derived outputs: PS3.15 Annex E, Basic Application Level
Confidentiality Profile.

What counts as identifying is the profile's Table E.1-1
(``dicom_dask.frames.annex_e.BASIC_PROFILE``, every row, as tag numbers)
plus its rules with wildcards: private attributes (odd groups), curve data
``(50xx,xxxx)``, overlay data and comments ``(60xx,3000)``, ``(60xx,4000)``. Any other
element whose value representation is PN (a person's name) is removed too.

How the actions are carried out (derived outputs are not DICOM instances, so no
attribute needs a dummy value to keep an IOD valid):

- ``X``, ``Z``, ``D`` and their combinations: the attribute is removed (sequences of
  references marked ``X/Z/U*`` too).
- ``U`` (instance UIDs: study, series, SOP instance, frame of reference...): replaced by
  [`pseudonym_uid`][dicom_dask.frames.deidentify.pseudonym_uid], a UID derived from the
  original by a hash (pydicom's ``generate_uid(entropy_srcs=...)``). It is the same for
  the same original, so UIDs stay consistent within and across outputs (two volumes of
  one frame of reference still share it), and whoever holds the source can recompute
  it to link an output back to its series; the output alone does not give the original.
  ``keep_uids=True`` is the profile's Retain UIDs Option.
- Dates and times are removed (the profile without its Retain Longitudinal Temporal
  Information options), except those named in ``retain``.

The result is marked as the profile asks: Patient Identity Removed ``YES``,
De-identification Method and its code sequence (CID 7050: ``113100`` Basic Application
Confidentiality Profile, ``113110`` Retain UIDs Option, ``113106`` Retain Longitudinal
Temporal Information Full Dates Option when those apply).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, generate_uid

from dicom_dask.frames.annex_e import BASIC_PROFILE

__all__ = [
    "REPLACED_UIDS",
    "Rules",
    "deidentify_attributes",
    "deidentify_dataset",
    "deidentify_json",
    "is_identifying",
    "pseudonym",
    "pseudonym_uid",
]

#: The tags whose values the profile replaces by other UIDs (action ``U``).
REPLACED_UIDS: frozenset[int] = frozenset(t for t, a in BASIC_PROFILE.items() if a == "U")
#: The tags the profile removes or blanks (every action but ``U``).
_REMOVED: frozenset[int] = frozenset(t for t, a in BASIC_PROFILE.items() if a != "U")

_METHOD = "PS3.15 Annex E Basic Profile (dicom_dask)"  # LO: at most 64 characters
_BASIC = ("113100", "Basic Application Confidentiality Profile")
_RETAIN_UIDS = ("113110", "Retain UIDs Option")
_RETAIN_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
_RETAIN_PRIVATE = ("113111", "Retain Safe Private Option")
_PATIENT_IDENTITY_REMOVED = 0x00120062
_DEIDENTIFICATION_METHOD = 0x00120063
_DEIDENTIFICATION_CODES = 0x00120064


def _wildcard(tag: int) -> bool:
    """The profile's rows with wildcards: private, curve and overlay attributes."""
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:  # private attributes (and their creators)
        return True
    if group & 0xFF00 == 0x5000:  # curve data (50xx,xxxx)
        return True
    return group & 0xFF00 == 0x6000 and element in (0x3000, 0x4000)  # overlay data, comments


def is_identifying(tag: int) -> bool:
    """Whether the Basic Profile removes, blanks or replaces the attribute ``tag``."""
    return tag in BASIC_PROFILE or _wildcard(tag)


def pseudonym_uid(uid: str) -> str:
    """The UID that replaces ``uid`` in outputs without identifiers (deterministic:
    pydicom's ``generate_uid`` with ``uid`` as its entropy source)."""
    return str(generate_uid(entropy_srcs=[str(uid).strip()]))


def pseudonym(value: str) -> str:
    """A stable stand-in for an identifier that must stay distinct (equal values give
    equal pseudonyms): ``"ID-"`` and 16 hex digits of its SHA-256."""
    return "ID-" + hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Rules:
    """What is kept of the profile's attributes.

    Attributes
    ----------
    keep_uids : bool
        Keep instance UIDs as they are (the Retain UIDs Option) instead of
        [`pseudonym_uid`][dicom_dask.frames.deidentify.pseudonym_uid].
    retain : collection of int
        Tags kept as they are (e.g. the acquisition times a reader orders frames by).
    pseudonymize : collection of int
        Tags whose values are replaced by
        [`pseudonym`][dicom_dask.frames.deidentify.pseudonym] (identifiers a reader groups
        by, kept distinct without being readable).
    """

    keep_uids: bool = False
    retain: Collection[int] = frozenset()
    pseudonymize: Collection[int] = frozenset()

    def action(self, tag: int, vr: str) -> str:
        """``"keep"``, ``"remove"``, ``"uid"`` (replace) or ``"pseudonym"``."""
        if tag in self.retain or tag in self._creators:
            return "keep"
        if tag in self.pseudonymize:
            return "pseudonym"
        if tag in REPLACED_UIDS:
            return "keep" if self.keep_uids else "uid"
        if tag in _REMOVED or _wildcard(tag) or vr == "PN":
            return "remove"
        return "keep"

    @property
    def _creators(self) -> frozenset[int]:
        """The Private Creator elements of the private blocks of ``retain``."""
        return frozenset(
            (t & 0xFFFF0000) | ((t >> 8) & 0xFF) for t in self.retain if (t >> 16) % 2 == 1
        )

    def codes(self) -> list[tuple[str, str]]:
        """The CID 7050 codes that describe these rules."""
        codes = [_BASIC]
        if self.keep_uids:
            codes.append(_RETAIN_UIDS)
        if any(t in BASIC_PROFILE and BASIC_PROFILE[t] != "U" for t in self.retain):
            codes.append(_RETAIN_DATES)
        if any((t >> 16) % 2 == 1 for t in self.retain):
            codes.append(_RETAIN_PRIVATE)
        return codes


def _replace(value: Any, how: str) -> Any:
    change = pseudonym_uid if how == "uid" else pseudonym
    if isinstance(value, list | tuple | MultiValue):
        return [change(v) if v else v for v in value]
    return change(value) if value else value


# -- DICOM JSON model (PS3.18 F.2) -----------------------------------------------------
def deidentify_json(
    doc: Mapping[str, Any], *, rules: Rules | None = None, mark: bool = True
) -> dict[str, Any]:
    """A copy of a DICOM JSON dataset (keys ``"GGGGEEEE"``) without the profile's
    attributes, nested sequences included (see the module docstring).

    Parameters
    ----------
    doc : mapping
        The dataset, as pydicom's ``Dataset.to_json_dict()`` gives it.
    rules : Rules, optional
        What to keep (default: nothing; UIDs replaced).
    mark : bool
        Add Patient Identity Removed, De-identification Method and its code sequence.
    """
    rules = rules or Rules()
    out = _json_items(doc, rules)
    if mark:
        out.update(
            {
                f"{_PATIENT_IDENTITY_REMOVED:08X}": {"vr": "CS", "Value": ["YES"]},
                f"{_DEIDENTIFICATION_METHOD:08X}": {"vr": "LO", "Value": [_METHOD]},
                f"{_DEIDENTIFICATION_CODES:08X}": {
                    "vr": "SQ",
                    "Value": [
                        {
                            "00080100": {"vr": "SH", "Value": [value]},
                            "00080102": {"vr": "SH", "Value": ["DCM"]},
                            "00080104": {"vr": "LO", "Value": [meaning]},
                        }
                        for value, meaning in rules.codes()
                    ],
                },
            }
        )
        out = dict(sorted(out.items()))
    return out


def _json_items(doc: Mapping[str, Any], rules: Rules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, element in doc.items():
        try:
            tag = int(key, 16)
        except (TypeError, ValueError):
            continue  # not an attribute: nothing of the header is kept blindly
        vr = str(element.get("vr", "")) if isinstance(element, Mapping) else ""
        how = rules.action(tag, vr)
        if how == "remove":
            continue
        element = dict(element) if isinstance(element, Mapping) else element
        if how in ("uid", "pseudonym") and isinstance(element, dict) and "Value" in element:
            element["Value"] = _replace(element["Value"], how)
        elif vr == "SQ" and isinstance(element, dict) and element.get("Value"):
            element["Value"] = [
                _json_items(item, rules) if isinstance(item, Mapping) else item
                for item in element["Value"]
            ]
        out[key] = element
    return out


# -- pydicom Dataset ---------------------------------------------------------------------
def deidentify_dataset(ds: Dataset, *, rules: Rules | None = None, mark: bool = True) -> Dataset:
    """A copy of ``ds`` without the profile's attributes, nested sequences included
    (``ds`` is left unchanged); the file meta information's Media Storage SOP Instance
    UID follows the SOP Instance UID. See
    [`deidentify_json`][dicom_dask.frames.deidentify.deidentify_json] for the options."""
    rules = rules or Rules()
    out = _dataset_items(ds, rules)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        new_meta = FileMetaDataset()
        for tag in meta.keys():  # noqa: SIM118 (a Dataset, not a dict)
            new_meta.add(copy.deepcopy(meta[tag]))
        uid = new_meta.get("MediaStorageSOPInstanceUID")
        if uid and not rules.keep_uids:
            new_meta.MediaStorageSOPInstanceUID = UID(pseudonym_uid(uid))
        out.file_meta = new_meta
    if mark:
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = _METHOD
        items = []
        for value, meaning in rules.codes():
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        out.DeidentificationMethodCodeSequence = items
    return out


def _dataset_items(ds: Dataset, rules: Rules) -> Dataset:
    out = Dataset()
    for tag in ds.keys():  # noqa: SIM118 (a Dataset, not a dict)
        elem = ds[tag]
        how = rules.action(int(tag), str(elem.VR))
        if how == "remove":
            continue
        if how in ("uid", "pseudonym"):
            out.add(DataElement(tag, elem.VR, _replace(elem.value, how)))
        elif elem.VR == "SQ":
            items = [_dataset_items(item, rules) for item in (elem.value or [])]
            out.add(DataElement(tag, "SQ", items))
        else:
            out.add(copy.deepcopy(elem))
    return out


# -- dicom_dask's own zarr attributes ------------------------------------------------------
#: Keys of dicom_dask's zarr attributes whose values are instance UIDs.
UID_KEYS = frozenset(
    {
        "study_instance_uid",
        "series_instance_uid",
        "sop_instance_uid",
        "frame_of_reference_uid",
        "frame_of_reference_uids",
    }
)


def deidentify_attributes(attrs: Any, *, keep_uids: bool = False) -> Any:
    """A copy of the attributes dicom_dask writes into ``zarr.json`` documents (under
    ``"dicom_dask"``, and OME ``"multiscales"``) without what comes from identifying
    attributes: instance UIDs replaced by
    [`pseudonym_uid`][dicom_dask.frames.deidentify.pseudonym_uid] (unless ``keep_uids``),
    acquisition times made relative to the first, a slide's name (its Container
    Identifier) and ``container_identifier`` replaced by
    [`pseudonym`][dicom_dask.frames.deidentify.pseudonym]."""
    if isinstance(attrs, list | tuple):
        return [deidentify_attributes(v, keep_uids=keep_uids) for v in attrs]
    if not isinstance(attrs, Mapping):
        return copy.deepcopy(attrs)
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in UID_KEYS and not keep_uids:
            out[key] = _replace(value, "uid")
        elif key == "container_identifier":
            out[key] = _replace(value, "pseudonym")
        elif key == "acquisition_time" and isinstance(value, Mapping):
            out[key] = {**value, "values": _relative(value.get("values"))}
        elif key == "multiscales" and isinstance(value, list):
            out[key] = [_renamed(m) for m in value]
        else:
            out[key] = deidentify_attributes(value, keep_uids=keep_uids)
    return out


def _relative(values: Any) -> Any:
    numbers = [v for v in values or [] if isinstance(v, int | float) and v == v]
    if not numbers:
        return values
    first = min(numbers)
    return [v - first if isinstance(v, int | float) and v == v else v for v in values]


def _renamed(multiscale: Any) -> Any:
    if not isinstance(multiscale, Mapping):
        return multiscale
    name = multiscale.get("name")
    if not name or name == "slide":  # no Container Identifier: the default name
        return dict(multiscale)
    return {**multiscale, "name": pseudonym(name)}
