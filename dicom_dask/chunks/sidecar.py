"""Index sidecars: a file's header and chunk manifest, saved once and reused.

The format is a kerchunk / fsspec reference set (``{"version": 1, "refs": ...}``)
with one extra top-level key, ``"dicom_dask"``, holding what is needed to rebuild
the header without reading the file: the dataset as DICOM JSON (no pixel data),
the transfer syntax, the pixel data element's position and the file size. fsspec's
``ReferenceFileSystem`` ignores that key, so the same file opens in any zarr reader.

An index is bound to its source: it records the URL (credentials stripped), the size
and what the filesystem reports to identify the file's version (``etag``,
``generation``, ``mtime``; format 2). Opening with an index checks them with one
metadata request per file (see [`open_index`][dicom_dask.chunks.sidecar.open_index]);
format 1 indexes (URL and size only) are checked for what they record.

An index is a cache of the source's header. Written without identifiers (the default,
``keep_identifiers=False``), its header keeps of the attributes of PS3.15 Annex E's Basic
Profile only what reading needs: the instance UIDs as they are (the Retain UIDs Option:
series are told apart and selected by them, and DICOM written from an indexed volume
refers to its source images), the acquisition times and the vendors' private diffusion
elements (b-value, gradient: the Retain Safe Private Option) volumes are ordered by, and
the Container Identifier that tells slides apart, replaced by a pseudonym; names, IDs, birth
dates, institutions and every other attribute of the profile are left out (see
[`SIDECAR_RULES`][dicom_dask.chunks.sidecar.SIDECAR_RULES]). A Per-Frame Functional Groups
Sequence that was never parsed travels as its raw bytes (frame geometry and timing).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicom_dask.chunks.references import (
    INDEX_FORMAT,
    REFERENCES_VERSION,
    SOURCES_KEY,
    reference_set,
)
from dicom_dask.compat import dataset_json
from dicom_dask.config import io_concurrency
from dicom_dask.enums import FrameEncoding
from dicom_dask.errors import DicomDaskError, ManifestError, StaleIndexError
from dicom_dask.frames import FileVersion, FrameIndex, FrameRanges
from dicom_dask.frames.deidentify import Rules, deidentify_json
from dicom_dask.frames.functional_groups import PER_FRAME_TAG, per_frame_raw
from dicom_dask.frames.header import DicomHeader, PixelDataElement, PixelDescription
from dicom_dask.frames.source import open_file
from dicom_dask.frames.storage import canonical_url, redact, resolve_fs, strip_credentials
from dicom_dask.types import ReferenceSet, SourcesEntry, StorageOptions

__all__ = [
    "FORMAT_VERSION",
    "SIDECAR_RULES",
    "check_identity",
    "index_from_dict",
    "index_to_dict",
    "load_index",
    "open_index",
    "open_indexes",
    "check_sources",
    "entries",
    "relocated",
    "save_index",
    "sources_entry",
]

#: The index format written (2: with the source's identity): the one constant,
#: [`INDEX_FORMAT`][dicom_dask.chunks.references.INDEX_FORMAT].
FORMAT_VERSION = INDEX_FORMAT
#: The formats read (1: URL and size only).
KNOWN_FORMATS = frozenset({1, INDEX_FORMAT})
#: The kerchunk reference-set versions read.
KNOWN_REFERENCE_VERSIONS = frozenset({REFERENCES_VERSION})


def _tags(*keywords: str) -> frozenset[int]:
    return frozenset(int(tag_for_keyword(k) or 0) for k in keywords)


#: The vendors' private diffusion elements ``images.diffusion`` reads (b-value, gradient,
#: complex component: GE, Siemens, Philips), safe private attributes (PS3.15 E.3.10).
DIFFUSION_PRIVATE = frozenset(
    {
        0x0043102F,
        0x00431039,
        0x001910BB,
        0x001910BC,
        0x001910BD,
        0x0019100C,
        0x0019100E,
        0x20011003,
        0x200510B0,
        0x200510B1,
        0x200510B2,
    }
)
#: What an index without identifiers keeps of the Basic Profile's attributes: instance
#: UIDs, the times and the private diffusion elements volumes are ordered and grouped by
#: (``images.diffusion``), and the Container Identifier slides are grouped by, as a pseudonym.
SIDECAR_RULES = Rules(
    keep_uids=True,
    retain=_tags(
        "AcquisitionTime", "AcquisitionDateTime", "ContentTime", "FrameAcquisitionDateTime"
    )
    | DIFFUSION_PRIVATE,
    pseudonymize=_tags("ContainerIdentifier"),
)


def index_to_dict(
    index: FrameIndex,
    refs: Mapping[str, Any],
    *,
    per_frame: bool = True,
    keep_identifiers: bool = False,
) -> ReferenceSet:
    """The sidecar document of ``index``, with ``refs`` as its kerchunk references.

    With ``per_frame=False`` an unparsed Per-Frame Functional Groups Sequence is left
    out (for callers that cache what they parsed from it, like slide indexes). Without
    ``keep_identifiers`` the header keeps only what reading needs of the identifying
    attributes (see the module docstring).
    """
    header = index.header
    ranges = index.ranges
    element = header.element
    entry: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "url": strip_credentials(header.url, remember=False),
        "file_size": header.file_size,
        "identity": dict(index.identity),
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
        **_dataset_json(header.dataset, per_frame=per_frame, keep=keep_identifiers),
    }
    return reference_set(dict(refs), index=entry)


def _dataset_json(ds: Dataset, *, per_frame: bool, keep: bool) -> dict[str, Any]:
    """The dataset as DICOM JSON (without identifiers unless ``keep``); an unparsed
    Per-Frame Functional Groups Sequence travels as its raw bytes (parsing 100,000 items
    to JSON would take minutes)."""
    raw = per_frame_raw(ds)
    # elements whose value does not fit their VR (GE's (0043,1080) "Coil ID Data",
    # text in a DS) are left out rather than failing the whole index
    options: dict[str, Any] = {"bulk_data_threshold": 2**62, "suppress_invalid_tags": True}

    def as_json(dataset: Dataset) -> dict[str, Any]:
        doc = dataset_json(dataset, **options)
        return doc if keep else deidentify_json(doc, rules=SIDECAR_RULES)

    if raw is None:
        return {"dataset": as_json(ds)}
    # a new dataset over a new dict: pydicom's ``Dataset.copy()`` shares the elements'
    # dict, and deleting from it took the sequence out of the caller's header
    rest = Dataset(dict(ds.items()))
    del rest[PER_FRAME_TAG]
    if not per_frame:
        return {"dataset": as_json(rest)}
    return {
        "dataset": as_json(rest),
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


def check_version(doc: Mapping[str, Any], source: str) -> None:
    """Refuse a document whose reference-set ``version`` is not one this release reads."""
    if not isinstance(doc, Mapping):
        raise ManifestError(f"{source}: not a dicom_dask index (a JSON object was expected)")
    version = doc.get("version", 1)
    if version not in KNOWN_REFERENCE_VERSIONS:
        raise ManifestError(
            f"{source}: reference-set version {version!r} is not supported (this release "
            f"reads version {', '.join(map(str, sorted(KNOWN_REFERENCE_VERSIONS)))})"
        )


def _check_format(value: Any, source: str, what: str = "index format") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in KNOWN_FORMATS:
        raise ManifestError(
            f"{source}: {what} {value!r} is not supported (this release reads "
            f"{', '.join(map(str, sorted(KNOWN_FORMATS)))}); write the index again"
        )
    return value


def index_from_dict(
    doc: Mapping[str, Any], *, source: str = "index", url: str | None = None
) -> FrameIndex:
    """Rebuild a [`FrameIndex`][dicom_dask.frames.FrameIndex] from a sidecar document (no
    file is read, nothing is checked against the file: see
    [`open_index`][dicom_dask.chunks.sidecar.open_index]).

    ``url`` replaces the recorded URL (an index re-pointed at a copy of its file).
    """
    source = redact(source)
    check_version(doc, source)
    try:
        info = doc["dicom_dask"]
        _check_format(info["format"], source)
        url = str(info["url"]) if url is None else url
        file_size = int(info["file_size"])
        ds = Dataset.from_json(info["dataset"])
        _restore_per_frame(ds, info.get("per_frame_raw"))
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = UID(info["transfer_syntax"])
        ds.file_meta = meta
        el = info["element"]
        element = PixelDataElement(**el)
        desc = PixelDescription.from_dataset(ds, url=url, pixel_keyword=element.keyword)
        inline = info.get("inline_pixel_data")
        header = DicomHeader(
            url=url,
            dataset=ds,
            transfer_syntax=UID(info["transfer_syntax"]),
            file_size=file_size,
            element=element,
            description=desc,
            little_endian=bool(info["little_endian"]),
            inline_pixel_data=None if inline is None else base64.b64decode(inline),
        )
        ranges = _ranges(info["ranges"], header, source)
        identity = {str(k): str(v) for k, v in dict(info.get("identity") or {}).items()}
    except DicomDaskError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # a JSON document can be malformed in any way
        raise ManifestError(f"{source}: not a dicom_dask index: {exc!r}") from exc
    return FrameIndex(header=header, ranges=ranges, requests=0, identity=identity)


def _ranges(r: Mapping[str, Any], header: DicomHeader, source: str) -> FrameRanges:
    """The frame ranges of a document, checked against the header they go with."""
    n = len(r["offsets"])
    k = int(r["frames_per_chunk"])
    nframes = header.description.number_of_frames
    if k < 1 or n != -(-nframes // k):
        raise ManifestError(
            f"{source}: {n} ranges of {k} frame(s) each do not cover the {nframes} frames "
            "of the header"
        )
    encoding = np.zeros(n, dtype=np.uint8)
    items = np.asarray(r["items"], dtype=np.int64)
    if items.size and (items.min() < 0 or items.max() >= n):
        raise ManifestError(f"{source}: item-encoded frame numbers outside 0..{n - 1}")
    encoding[items] = FrameEncoding.ITEMS.value
    ranges = FrameRanges(
        offsets=np.asarray(r["offsets"], dtype=np.uint64).reshape(n),
        lengths=np.asarray(r["lengths"], dtype=np.uint64).reshape(n),
        encoding=encoding,
        fragments=np.asarray(r["fragments"], dtype=np.uint32).reshape(n),
        frames_per_chunk=k,
        method=str(r["method"]),
    )
    if ranges.method == "dicomweb":
        return ranges
    inline = header.inline_pixel_data
    size = len(inline) if inline is not None else header.file_size
    ends = ranges.offsets.astype(object) + ranges.lengths.astype(object)
    if n and max(ends) > size:
        raise ManifestError(
            f"{source}: a frame range ends at byte {max(ends)}, past the "
            f"{'inline pixel data' if inline is not None else 'file'} of {size} bytes"
        )
    return ranges


def entries(doc: Mapping[str, Any], key: str, items: str, fmt: int, source: str) -> list[Any]:
    """``doc[key][items]`` of a slide or series index, once its format is checked."""
    from dicom_dask.errors import NoImagesError

    check_version(doc, source)
    try:
        found, listed = doc[key].get("format"), list(doc[key][items])
    except (KeyError, TypeError, AttributeError) as exc:
        raise NoImagesError(f"{source}: not a dicom_dask {key} index ({exc!r})") from exc
    if found != fmt:
        raise ManifestError(
            f"{source}: {key.removeprefix('dicom_dask_')} index format {found!r} is not "
            f"supported (this release reads {fmt}); write the index again"
        )
    return listed


# -- binding an index to its source -----------------------------------------------------
def relocated(url: str, relocate: Mapping[str, str] | None) -> str:
    """``url`` with the longest matching prefix of ``relocate`` replaced (a copy's URL)."""
    if not relocate:
        return url
    match = max((p for p in relocate if url.startswith(p)), key=len, default=None)
    return url if match is None else canonical_url(relocate[match] + url[len(match) :])


def _describe(url: str, size: Any, identity: Mapping[str, Any]) -> str:
    parts = [f"{size} bytes"] + [f"{k} {v}" for k, v in sorted(identity.items())]
    return f"{url} ({', '.join(parts)})"


def check_identity(
    info: Mapping[str, Any],
    url: str,
    *,
    size: int,
    identity: Mapping[str, str],
    relocated: bool = False,
    source: str = "index",
) -> None:
    """Raise [`StaleIndexError`][dicom_dask.errors.StaleIndexError] unless the file at
    ``url`` (its ``size`` and ``identity`` as the filesystem reports them) is the one the
    index document ``info`` describes.

    The size is always compared; the identity as
    [`FileVersion.differences`][dicom_dask.frames.version.FileVersion.differences] does
    (the rule reads are checked with), and not for a copy (``relocated``).
    """
    recorded = dict(info.get("identity") or {})
    version = FileVersion(size=int(info["file_size"]), identity={} if relocated else recorded)
    problems = version.differences(size, identity)
    if problems:
        raise StaleIndexError(
            f"{redact(source)}: the index describes "
            f"{_describe(redact(str(info['url'])), info['file_size'], recorded)}, but "
            f"{_describe(redact(url), size, identity)} differs ({'; '.join(problems)}): the "
            "file was rewritten since the index was written; index it again"
        )


def _bound_url(info: Mapping[str, Any], url: str | None, relocate: bool, source: str) -> str:
    recorded = str(info["url"])
    if url is None:
        return recorded
    given = canonical_url(url)
    if given != recorded and not relocate:
        raise StaleIndexError(
            f"{redact(source)}: the index describes {redact(recorded)}, not {redact(given)}; "
            "to read a copy of that file with this index, pass relocate=True (its size is "
            "checked)"
        )
    return given


def open_index(
    doc: Mapping[str, Any],
    url: str | os.PathLike[str] | None = None,
    *,
    relocate: bool = False,
    verify: bool = True,
    storage_options: StorageOptions = None,
    source: str = "index",
) -> FrameIndex:
    """A [`FrameIndex`][dicom_dask.frames.FrameIndex] from a sidecar document, bound to
    its file.

    ``url``, when given, must be the URL the index records, unless ``relocate`` (the
    index then describes a copy at ``url``: only the size is compared). With ``verify``
    the file's size and identity are compared with the index (one metadata request);
    a mismatch raises [`StaleIndexError`][dicom_dask.errors.StaleIndexError].
    """
    source = redact(source)
    check_version(doc, source)
    info = doc.get("dicom_dask")
    if not isinstance(info, Mapping) or "url" not in info:
        raise ManifestError(f"{source}: not a dicom_dask index (no 'dicom_dask' entry)")
    target = _bound_url(info, None if url is None else os.fspath(url), relocate, source)
    index = index_from_dict(doc, source=source, url=target)
    if verify:
        _verify(info, target, target != str(info["url"]), storage_options, source)
    return _bound(index, moved=target != str(info["url"]))


def _bound(index: FrameIndex, *, moved: bool) -> FrameIndex:
    """``index`` as its reads check it: a copy elsewhere (``moved``) is another object,
    with its own ETag and times, so only its size is known."""
    return dataclasses.replace(index, identity={}) if moved and index.identity else index


def _verify(
    info: Mapping[str, Any], url: str, moved: bool, storage_options: StorageOptions, source: str
) -> None:
    if url.startswith("dicomweb+") or (info.get("ranges") or {}).get("method") == "dicomweb":
        return  # DICOMweb reports no size: the URL binding is the check
    found = open_file(url, storage_options=storage_options)
    check_identity(
        info, url, size=found.size, identity=found.identity, relocated=moved, source=source
    )


def open_indexes(
    infos: Sequence[Mapping[str, Any]],
    *,
    relocate: Mapping[str, str] | None = None,
    verify: bool = True,
    storage_options: StorageOptions = None,
    source: str = "index",
    threads: int = 16,
) -> list[FrameIndex]:
    """The files of a series or slide index, each bound to its source (see
    [`open_index`][dicom_dask.chunks.sidecar.open_index]); ``relocate`` maps URL
    prefixes of the index to those of a copy. The checks run concurrently."""
    source = redact(source)

    def one(info: Mapping[str, Any]) -> FrameIndex:
        if not isinstance(info, Mapping) or "url" not in info:
            raise ManifestError(f"{source}: an entry of the index is not a file index")
        recorded = str(info["url"])
        target = relocated(recorded, relocate)
        index = index_from_dict({"dicom_dask": info}, source=source, url=target)
        if verify:
            _verify(info, target, target != recorded, storage_options, source)
        return _bound(index, moved=target != recorded)

    if len(infos) <= 1 or not verify:
        return [one(i) for i in infos]
    with ThreadPoolExecutor(min(threads, io_concurrency(), len(infos))) as pool:
        return list(pool.map(one, infos))


def sources_entry(indexes: Iterable[FrameIndex]) -> SourcesEntry:
    """What identifies each file a reference set reads (URL without credentials, size,
    ``etag`` / ``generation`` / ``mtime``), for
    [`check_sources`][dicom_dask.chunks.sidecar.check_sources]."""
    files: dict[str, dict[str, Any]] = {}
    for ix in indexes:
        url = strip_credentials(ix.url, remember=False)
        files.setdefault(
            url, {"url": url, "file_size": ix.header.file_size, "identity": dict(ix.identity)}
        )
    return {"format": INDEX_FORMAT, "files": list(files.values())}


def check_sources(
    refs: Mapping[str, Any],
    *,
    relocate: Mapping[str, str] | None = None,
    storage_options: StorageOptions = None,
    source: str = "references",
    threads: int = 16,
) -> None:
    """Check that the files a reference set reads are those it was made from (size and
    identity; one metadata request per file, concurrently): else
    [`StaleIndexError`][dicom_dask.errors.StaleIndexError]. ``relocate`` maps URL
    prefixes to those of copies (then only sizes are compared)."""
    check_version(refs, source)
    entry = refs.get(SOURCES_KEY)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("files"), list):
        raise ManifestError(f"{source}: the references do not list their sources ({SOURCES_KEY})")
    _check_format(entry.get("format"), source)

    def one(info: Any) -> None:
        if not isinstance(info, Mapping) or "url" not in info or "file_size" not in info:
            raise ManifestError(f"{source}: a source entry lacks its url or file_size")
        recorded = str(info["url"])
        target = relocated(recorded, relocate)
        _verify(info, target, target != recorded, storage_options, source)

    files = entry["files"]
    if len(files) <= 1:
        for info in files:
            one(info)
        return
    with ThreadPoolExecutor(min(threads, io_concurrency(), len(files))) as pool:
        list(pool.map(one, files))


def save_index(
    doc: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
) -> None:
    """Write a sidecar document to ``path`` (any fsspec URL).

    The document is written as given: callers build it with credentials stripped
    ([`index_to_dict`][dicom_dask.chunks.sidecar.index_to_dict]).
    """
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
            doc = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"{redact(os.fspath(path))}: cannot read the index: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestError(
            f"{redact(os.fspath(path))}: not a dicom_dask index (a JSON object was expected, "
            f"found {type(doc).__name__})"
        )
    return doc
