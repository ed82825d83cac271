"""Fuzz targets of the byte-level parsers, and their seed corpora from real files.

Each target takes one input (bytes) and exercises one parser. The contract every
target checks: the parser returns, or raises a
[`DicomDaskError`][dicom_dask.errors.DicomDaskError] subclass; any other exception is
a finding (the fuzzer reports it as a crash). What a parser returns is checked too
(frame byte ranges must lie inside the file). Time per input and memory are bounded
by the runner (``tests/fuzz/run.py``: libFuzzer ``-timeout`` and an address-space
limit, so that a large allocation fails as ``MemoryError``, also a finding).

Targets
-------
header
    The whole file through [`read_header`][dicom_dask.frames.header.read_header]
    (over an in-memory filesystem, or a real local file for odd-length inputs).
native
    Whole native files: header, [`native_ranges`][dicom_dask.frames.native.native_ranges]
    and the bytes of the first and last chunk.
encapsulated
    A real encapsulated file's header with the frame count, the Extended Offset
    Table and the whole item stream (Basic Offset Table, fragments, delimiter) taken
    from the input, through
    [`encapsulated_ranges`][dicom_dask.frames.encapsulated.encapsulated_ranges].
functional_groups
    The raw value of a Per-Frame Functional Groups Sequence and a frame count through
    [`slide_positions`][dicom_dask.frames.functional_groups.slide_positions].
index
    An index sidecar (JSON text) through the loader and the binding check.
dicomweb
    A WADO-RS frames reply (Content-Type and multipart body) through
    [`fetch_frames`][dicom_dask.frames.dicomweb.fetch_frames].
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from dicom_dask.errors import DicomDaskError

REAL = Path(
    os.environ.get(
        "DICOM_DASK_REAL_DATA", Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
    )
)
#: Largest input a target is given (bigger seeds are cut; the fuzzer grows up to it).
MAX_LEN = 1 << 17

_MEM = fsspec.filesystem("memory")
_TMP = Path(tempfile.gettempdir()) / f"dicom_dask_fuzz_{os.getpid()}.dcm"


class ContractError(AssertionError):
    """A parser returned something that breaks its own promises."""


def _source(data: bytes, *, local: bool = False) -> Any:
    from dicom_dask.frames.source import open_file

    if local:
        _TMP.write_bytes(data)
        return open_file(str(_TMP))
    _MEM.pipe_file("/fuzz/input.dcm", data)
    return open_file("memory://fuzz/input.dcm")


def _check_ranges(ranges: Any, size: int) -> None:
    offsets = ranges.offsets.astype(np.int64)
    ends = offsets + ranges.lengths.astype(np.int64)
    if len(offsets) and (offsets.min() < 0 or ends.max() > size):
        raise ContractError(f"a frame range lies outside the file of {size} bytes")


# -- targets -------------------------------------------------------------------------
def header(data: bytes) -> None:
    from dicom_dask.frames.header import read_header
    from dicom_dask.frames.source import BlockReader

    with contextlib.suppress(DicomDaskError):
        read_header(BlockReader(_source(data, local=len(data) % 2 == 1), first_block=4096))


def native(data: bytes) -> None:
    from dicom_dask.frames.header import read_header
    from dicom_dask.frames.native import native_ranges
    from dicom_dask.frames.source import BlockReader

    try:
        source = _source(data)
        head = read_header(BlockReader(source, first_block=4096))
        if head.is_encapsulated or head.inline_pixel_data is not None:
            return
        ranges = native_ranges(head)
        _check_ranges(ranges, source.size)
        spans = [
            (int(ranges.offsets[i]), int(ranges.offsets[i] + ranges.lengths[i])) for i in (0, -1)
        ]
        source.read_ranges(spans)
    except DicomDaskError:
        pass


@functools.cache
def _templates() -> list[tuple[bytes, Any]]:
    """(bytes before the pixel data value, header) of real encapsulated files."""
    from dicom_dask.frames.header import read_header
    from dicom_dask.frames.source import BlockReader, open_file

    out = []
    for path in _encapsulated_files():
        head = read_header(BlockReader(open_file(str(path))))
        prefix = path.read_bytes()[: head.element.value_offset]
        out.append((prefix, head))
    return out


def _encapsulated_files() -> list[Path]:
    names = [
        "codecs/jpeg_baseline/JPEGBaseline_1s_1f_u_08_08.dcm",
        "codecs/rle/SC_rgb_rle_16bit_2frame.dcm",
        "codecs/jpeg_ls_lossless/JLSL_08_07_0_1F.dcm",
        "codecs/j2k_lossless/MR_small_jp2klossless.dcm",
        "wsi/highdicom_sm_image_jpegls.dcm",
        "wsi/highdicom_sm_image_jpegls_nobot.dcm",
        "enhanced/emri_small_RLE.dcm",
        "codecs/rle/OBXXXX1A_rle_2frame.dcm",
    ]
    return [REAL / n for n in names if (REAL / n).exists()]


def encapsulated(data: bytes) -> None:
    """``data``: template index, frame count - 1, flags (bit 0: an Extended Offset Table
    follows as 8 x n offsets then 8 x n lengths), then the item stream."""
    from dicom_dask.frames.encapsulated import encapsulated_ranges
    from dicom_dask.frames.source import BlockReader

    templates = _templates()
    if len(data) < 3 or not templates:
        return
    prefix, head = templates[data[0] % len(templates)]
    nframes, flags, rest = data[1] + 1, data[2], data[3:]
    ds = head.dataset.copy()
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    if flags & 1:
        ds.ExtendedOffsetTable = rest[: 8 * nframes]
        ds.ExtendedOffsetTableLengths = rest[8 * nframes : 16 * nframes]
        rest = rest[16 * nframes :]
    content = prefix + rest
    source = _source(content)
    desc = replace(head.description, number_of_frames=nframes)
    fuzzed = replace(head, url=source.url, dataset=ds, file_size=source.size, description=desc)
    try:
        ranges = encapsulated_ranges(BlockReader(source, first_block=4096), fuzzed)
        _check_ranges(ranges, source.size)
        if len(ranges) != nframes:
            raise ContractError(f"{len(ranges)} ranges for {nframes} frames")
    except DicomDaskError:
        pass


def functional_groups(data: bytes) -> None:
    """``data``: frame count - 1 (two bytes), flags (bit 0 implicit VR), the raw value."""
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag

    from dicom_dask.frames.functional_groups import PER_FRAME_TAG, slide_positions

    if len(data) < 3:
        return
    (n,) = struct.unpack("<H", data[:2])
    implicit = bool(data[2] & 1)
    value = data[3:]
    ds = Dataset()
    ds[PER_FRAME_TAG] = RawDataElement(
        BaseTag(PER_FRAME_TAG), None if implicit else "SQ", len(value), value, 0, implicit, True
    )
    try:
        found = slide_positions(ds, url="fuzz", number_of_frames=n + 1)
        if len(found.rows) != n + 1 or len(found.columns) != n + 1:
            raise ContractError("positions for a different number of frames")
    except DicomDaskError:
        pass


def index(data: bytes) -> None:
    from dicom_dask.chunks.sidecar import check_identity, index_from_dict, load_index

    _MEM.pipe_file("/fuzz/index.json", data)
    try:
        doc = load_index("memory://fuzz/index.json")
        found = index_from_dict(doc, source="fuzz")
        if found.ranges.method not in ("dicomweb", "inline"):
            _check_ranges(found.ranges, found.header.file_size)
        identity = {"mtime": "1.0", "etag": '"x"'}
        check_identity(doc["dicom_dask"], found.url, size=found.header.file_size, identity=identity)
    except DicomDaskError:
        pass


_BOUNDARY = "fuzz-boundary"


@functools.cache
def _dicomweb() -> Any:
    import requests
    from dicomweb_client.api import DICOMwebClient

    class Adapter(requests.adapters.BaseAdapter):
        reply: tuple[str, bytes] = ("", b"")

        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            response = requests.Response()
            response.status_code = 200
            response.headers["Content-Type"] = self.reply[0]
            response.raw = io.BytesIO(self.reply[1])
            response.url = request.url
            response.request = request
            return response

        def close(self) -> None:
            pass

    adapter = Adapter()
    session = requests.Session()
    session.mount("http://", adapter)
    client = DICOMwebClient(url="http://fuzz.invalid/dicom-web", session=session)
    return adapter, client


def _dicomweb_client() -> Any:
    return _dicomweb()[1]


def dicomweb(data: bytes) -> None:
    """``data``: first byte: how many frames are asked for; then the Content-Type header
    value up to a NUL byte, then the body."""
    from dicom_dask.frames.dicomweb import fetch_frames

    if len(data) < 2:
        return
    adapter, _ = _dicomweb()
    count = data[0] % 4 + 1
    content_type, _, body = data[1:].partition(b"\0")
    adapter.reply = (content_type.decode("latin-1"), body)
    url = "dicomweb+http://fuzz.invalid/dicom-web/studies/1.2/series/1.3/instances/1.4"
    try:
        got = fetch_frames(url, list(range(1, count + 1)), storage_options=_dicomweb_client)
        if sorted(got) != list(range(1, count + 1)):
            raise ContractError(f"frames {sorted(got)} for 1..{count}")
    except DicomDaskError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "header": header,
    "native": native,
    "encapsulated": encapsulated,
    "functional_groups": functional_groups,
    "index": index,
    "dicomweb": dicomweb,
}


# -- seeds ---------------------------------------------------------------------------
def _real_files() -> list[Path]:
    return sorted(p for p in REAL.rglob("*.dcm") if p.stat().st_size <= 4 * MAX_LEN)


def _cut(data: bytes) -> bytes:
    return data[:MAX_LEN]


def seeds(target: str) -> list[bytes]:
    """The seed corpus of ``target``, made from the real files (a few dozen inputs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [s for s in _SEEDS[target]() if len(s) <= MAX_LEN]


def _header_seeds() -> list[bytes]:
    out = []
    for path in _real_files()[::2]:
        data = path.read_bytes()
        out.append(_cut(data) if len(data) <= MAX_LEN else data[:4096])
    return out


def _native_seeds() -> list[bytes]:
    from dicom_dask.frames.header import read_header
    from dicom_dask.frames.source import BlockReader, open_file

    out = []
    for path in _real_files():
        try:
            head = read_header(BlockReader(open_file(str(path))))
        except DicomDaskError:
            continue
        if not head.is_encapsulated and path.stat().st_size <= MAX_LEN:
            out.append(path.read_bytes())
    return out


def _encapsulated_seeds() -> list[bytes]:
    from dicom_dask.frames.encapsulated import scan_fragments
    from dicom_dask.frames.source import BlockReader, open_file

    out = []
    for k, (prefix, head) in enumerate(_templates()):
        path = _encapsulated_files()[k]
        stream = path.read_bytes()[len(prefix) :]
        n = head.description.number_of_frames
        if n > 256:
            continue
        out.append(bytes([k, n - 1, 0]) + stream[: MAX_LEN - 3])
        # the same items with an Extended Offset Table, when each frame is one fragment
        (bot_len,) = struct.unpack("<L", stream[4:8])
        first = len(prefix) + 8 + bot_len
        fragments = scan_fragments(BlockReader(open_file(str(path))), first)
        if len(fragments) == n:
            eot = struct.pack(f"<{n}Q", *(f.offset - first for f in fragments))
            lengths = struct.pack(f"<{n}Q", *(f.length for f in fragments))
            out.append(bytes([k, n - 1, 1]) + eot + lengths + stream[: MAX_LEN - 3 - 16 * n])
    return out


def _functional_group_seeds() -> list[bytes]:
    import pydicom

    from dicom_dask.frames.functional_groups import PER_FRAME_TAG, per_frame_raw

    out = []
    for path in _real_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if PER_FRAME_TAG not in ds:
            continue
        raw = per_frame_raw(ds)
        if raw is None or raw.value is None:
            continue
        n = int(ds.get("NumberOfFrames", 1) or 1)
        flags = 1 if raw.is_implicit_VR else 0
        out.append(struct.pack("<H", (n - 1) & 0xFFFF) + bytes([flags]) + bytes(raw.value))
    return out


def _index_seeds() -> list[bytes]:
    from dicom_dask.api import open_frames

    out = []
    for path in _real_files()[::3]:
        try:
            doc = open_frames(path).to_index()
        except DicomDaskError:
            continue
        text = json.dumps(doc, separators=(",", ":")).encode()
        if len(text) <= MAX_LEN:
            out.append(text)
    return out


def _dicomweb_seeds() -> list[bytes]:
    out = []
    frames = [p.read_bytes()[-2000:] for p in _encapsulated_files()[:4]]
    for count in (1, 2, 3):
        parts = b"".join(
            b"--"
            + _BOUNDARY.encode()
            + b"\r\nContent-Type: application/octet-stream\r\n\r\n"
            + frames[k % len(frames)]
            + b"\r\n"
            for k in range(count)
        )
        body = parts + b"--" + _BOUNDARY.encode() + b"--"
        ctype = (
            f'multipart/related; type="application/octet-stream"; '
            f'transfer-syntax=1.2.840.10008.1.2.4.50; boundary="{_BOUNDARY}"'
        )
        out.append(bytes([count - 1]) + ctype.encode() + b"\0" + body)
    return out


_SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "header": _header_seeds,
    "native": _native_seeds,
    "encapsulated": _encapsulated_seeds,
    "functional_groups": _functional_group_seeds,
    "index": _index_seeds,
    "dicomweb": _dicomweb_seeds,
}
