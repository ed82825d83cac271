"""Index sidecars: a file's header and chunk manifest, saved once and reused.

The format is a kerchunk / fsspec reference set (``{"version": 1, "refs": ...}``)
with one extra top-level key, ``"dicom_dask"``, holding what is needed to rebuild
the header without reading the file: the dataset as DICOM JSON (no pixel data),
the transfer syntax, the pixel data element's position and the file size. fsspec's
``ReferenceFileSystem`` ignores that key, so the same file opens in any zarr reader.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicom_dask.enums import FrameEncoding
from dicom_dask.errors import ManifestError
from dicom_dask.frames import FrameIndex, FrameRanges
from dicom_dask.frames._io import StorageOptions, canonical_url, resolve_fs
from dicom_dask.frames.functional_groups import PER_FRAME_TAG, per_frame_raw
from dicom_dask.frames.header import DicomHeader, PixelDataElement, PixelDescription

__all__ = ["FORMAT_VERSION", "index_from_dict", "index_to_dict", "load_index", "save_index"]

FORMAT_VERSION = 1


def index_to_dict(
    index: FrameIndex, refs: Mapping[str, Any], *, per_frame: bool = True
) -> dict[str, Any]:
    """The sidecar document of ``index``, with ``refs`` as its kerchunk references.

    With ``per_frame=False`` an unparsed Per-Frame Functional Groups Sequence is left
    out (for callers that cache what they parsed from it, like slide indexes).
    """
    header = index.header
    ranges = index.ranges
    element = header.element
    return {
        "version": 1,
        "refs": dict(refs),
        "dicom_dask": {
            "format": FORMAT_VERSION,
            "url": header.url,
            "file_size": header.file_size,
            "transfer_syntax": str(header.transfer_syntax),
            "little_endian": header.little_endian,
            "element": {
                "tag": element.tag,
                "keyword": element.keyword,
                "vr": element.vr,
                "element_offset": element.element_offset,
                "value_offset": element.value_offset,
                "length": element.length,
            },
            "ranges": {
                "method": ranges.method,
                "frames_per_chunk": ranges.frames_per_chunk,
                "offsets": ranges.offsets.tolist(),
                "lengths": ranges.lengths.tolist(),
                "items": np.flatnonzero(ranges.encoding == FrameEncoding.ITEMS.value).tolist(),
                "fragments": ranges.fragments.tolist(),
            },
            # a deflated dataset cannot be range-read: its inflated pixel data travel along
            "inline_pixel_data": (
                None
                if header.inline_pixel_data is None
                else base64.b64encode(header.inline_pixel_data).decode("ascii")
            ),
            **_dataset_json(header.dataset, per_frame=per_frame),
        },
    }


def _dataset_json(ds: Dataset, *, per_frame: bool) -> dict[str, Any]:
    """The dataset as DICOM JSON; an unparsed Per-Frame Functional Groups Sequence
    travels as its raw bytes (parsing 100,000 items to JSON would take minutes)."""
    raw = per_frame_raw(ds)
    # elements whose value does not fit their VR (GE's (0043,1080) "Coil ID Data",
    # text in a DS) are left out rather than failing the whole index
    options: dict[str, Any] = {"bulk_data_threshold": 2**62, "suppress_invalid_tags": True}
    if raw is None:
        return {"dataset": ds.to_json_dict(**options)}
    rest = ds.copy()
    del rest[PER_FRAME_TAG]
    if not per_frame:
        return {"dataset": rest.to_json_dict(**options)}
    return {
        "dataset": rest.to_json_dict(**options),
        "per_frame_raw": {
            "value": base64.b64encode(bytes(raw.value or b"")).decode("ascii"),
            "implicit": bool(raw.is_implicit_VR),
            "little": bool(raw.is_little_endian),
            "length": int(raw.length),
        },
    }


def _restore_per_frame(ds: Dataset, doc: Mapping[str, Any] | None) -> None:
    if not doc:
        return
    value = base64.b64decode(doc["value"])
    ds[PER_FRAME_TAG] = RawDataElement(
        BaseTag(PER_FRAME_TAG),
        "SQ",
        int(doc["length"]),
        value,
        0,
        bool(doc["implicit"]),
        bool(doc["little"]),
    )


def index_from_dict(doc: Mapping[str, Any], *, source: str = "index") -> FrameIndex:
    """Rebuild a `FrameIndex` from a sidecar document (no file is read)."""
    try:
        info = doc["dicom_dask"]
        if int(info["format"]) != FORMAT_VERSION:
            raise ManifestError(
                f"{source}: index format {info['format']} is not supported "
                f"(expected {FORMAT_VERSION})"
            )
        ds = Dataset.from_json(info["dataset"])
        _restore_per_frame(ds, info.get("per_frame_raw"))
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = UID(info["transfer_syntax"])
        ds.file_meta = meta
        el = info["element"]
        element = PixelDataElement(**el)
        desc = PixelDescription.from_dataset(ds, url=info["url"], pixel_keyword=element.keyword)
        header = DicomHeader(
            url=info["url"],
            dataset=ds,
            transfer_syntax=UID(info["transfer_syntax"]),
            file_size=int(info["file_size"]),
            element=element,
            description=desc,
            little_endian=bool(info["little_endian"]),
            inline_pixel_data=(
                None
                if info.get("inline_pixel_data") is None
                else base64.b64decode(info["inline_pixel_data"])
            ),
        )
        r = info["ranges"]
        n = len(r["offsets"])
        encoding = np.zeros(n, dtype=np.uint8)
        encoding[np.asarray(r["items"], dtype=np.int64)] = FrameEncoding.ITEMS.value
        ranges = FrameRanges(
            offsets=np.asarray(r["offsets"], dtype=np.uint64).reshape(n),
            lengths=np.asarray(r["lengths"], dtype=np.uint64).reshape(n),
            encoding=encoding,
            fragments=np.asarray(r["fragments"], dtype=np.uint32).reshape(n),
            frames_per_chunk=int(r["frames_per_chunk"]),
            method=str(r["method"]),
        )
    except ManifestError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ManifestError(f"{source}: not a dicom_dask index: {exc!r}") from exc
    return FrameIndex(header=header, ranges=ranges, requests=0)


def save_index(
    doc: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
) -> None:
    """Write a sidecar document to ``path`` (any fsspec URL)."""
    fs, fpath = resolve_fs(canonical_url(path), storage_options)
    with fs.open(fpath, "w") as f:
        json.dump(doc, f, separators=(",", ":"))


def load_index(
    path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    storage_options: StorageOptions = None,
) -> dict[str, Any]:
    """Read a sidecar document from ``path`` (or return a mapping unchanged)."""
    if isinstance(path, Mapping):
        return dict(path)
    try:
        fs, fpath = resolve_fs(canonical_url(path), storage_options)
        with fs.open(fpath, "r") as f:
            return dict(json.load(f))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{os.fspath(path)}: cannot read the index: {exc}") from exc
