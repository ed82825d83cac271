"""Stream one DICOM instance: header first, then frames as dask computes them.

The header is written with an undefined-length Pixel Data element; frame items follow
in order, then the sequence delimiter. The offset table needs every frame's size,
which is known only at the end:

* a local file reserves the Basic Offset Table (``4 n`` bytes) -- or, when the pixel
  data might pass ``eot_threshold`` (4 GiB), an Extended Offset Table and its lengths
  (``2 x 8 n`` bytes) with an empty BOT -- and patches it in place at the end (what
  wsidicom's writer does too);
* an fsspec URL (S3, GCS...) cannot be patched: the items are spooled to a local
  temporary file, then the header, with its exact table, and the spooled items are
  streamed to the destination in blocks (a multipart upload on S3).

Memory stays at one batch of encoded frames; native (Explicit VR Little Endian) data
has a defined length and needs no table.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from dicom_dask.errors import InvalidHeaderError
from dicom_dask.frames.storage import resolve_fs
from dicom_dask.types import StorageOptions

__all__ = ["InstanceWriter", "Written", "header_bytes", "is_local", "write_instance"]

#: Pixel data larger than this gets an Extended Offset Table (BOT offsets are 32-bit).
EOT_THRESHOLD = 2**32
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
_COPY_BLOCK = 16 * 2**20
#: Lossy Image Compression Ratio (0028,2112), explicit VR little endian, as it starts.
_RATIO_TAG = struct.pack("<HH2s", 0x0028, 0x2112, b"DS")
_PLACEHOLDER = b"0" * 16
#: The pixel data elements a writer streams: element number and VR (None: by bit depth).
PIXEL_ELEMENTS = {
    "PixelData": (0x0010, None),
    "FloatPixelData": (0x0008, "OF"),
    "DoubleFloatPixelData": (0x0009, "OD"),
}


def _ratio_position(head: bytes) -> int | None:
    """Where the ratio placeholder (the last 16 bytes of the value) sits in ``head``."""
    at = head.find(_RATIO_TAG)
    if at < 0:
        return None
    (length,) = struct.unpack_from("<H", head, at + 6)
    end = at + 8 + length
    if head[end - 1 : end] == b" ":  # padded to an even length
        end -= 1
    start = end - 16
    if head[start:end] != _PLACEHOLDER:
        return None
    return start


def _ratio_bytes(decoded: int, encoded: int) -> bytes:
    text = f"{decoded / max(encoded, 1):.6g}".encode()
    return text.ljust(16)


@dataclass(frozen=True)
class Written:
    """What was written: the URL, the offset table kind and each frame's item."""

    url: str
    table: str
    offsets: np.ndarray
    lengths: np.ndarray


def is_local(dest: str | os.PathLike[str]) -> bool:
    """Whether ``dest`` is a path on this machine (no URL scheme, or ``file://``)."""
    text = os.fspath(dest)
    return "://" not in text or text.startswith("file://")


def _local_path(dest: str | os.PathLike[str]) -> str:
    text = os.fspath(dest)
    return text[len("file://") :] if text.startswith("file://") else text


def header_bytes(
    ds: Dataset,
    *,
    offsets: Sequence[int] | None = None,
    lengths: Sequence[int] | None = None,
) -> bytes:
    """Preamble, file meta and ``ds`` (no Pixel Data), with an Extended Offset Table if given."""
    out = Dataset()
    out.update(ds)
    out.file_meta = ds.file_meta
    out.preamble = b"\x00" * 128
    for keyword in (*PIXEL_ELEMENTS, "ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in out:
            del out[keyword]
    if offsets is not None and lengths is not None:
        out.ExtendedOffsetTable = np.asarray(offsets, dtype="<u8").tobytes()
        out.ExtendedOffsetTableLengths = np.asarray(lengths, dtype="<u8").tobytes()
    buf = io.BytesIO()
    dcmwrite(buf, out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def _pixel_header(encapsulated: bool, vr: str, length: int, element: int = 0x0010) -> bytes:
    if encapsulated:
        return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
    if length > 0xFFFFFFFE:
        raise InvalidHeaderError(
            f"native pixel data of {length} bytes does not fit a defined-length element "
            "(4 GiB); choose an encapsulated transfer syntax"
        )
    return struct.pack("<HH2sHI", 0x7FE0, element, vr.encode(), 0, length)


def _bot(n: int) -> bytes:
    return _ITEM + struct.pack("<I", 4 * n) + b"\x00" * (4 * n)


class _Items:
    """Writes items to ``fh`` and records their offsets (from the first item after the BOT)."""

    def __init__(self, fh: BinaryIO, encapsulated: bool) -> None:
        self.fh = fh
        self.encapsulated = encapsulated
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        self.position = 0

    def write(self, frame: bytes) -> None:
        if self.encapsulated:
            if len(frame) % 2:
                frame += b"\x00"
            self.fh.write(_ITEM + struct.pack("<I", len(frame)))
            self.fh.write(frame)
            self.offsets.append(self.position)
            self.lengths.append(len(frame))
            self.position += 8 + len(frame)
        else:
            self.fh.write(frame)
            self.offsets.append(self.position)
            self.lengths.append(len(frame))
            self.position += len(frame)


class InstanceWriter:
    """One instance written frame by frame: the header first, frames as they come.

    The push form of
    [`write_instance`][dicom_dask.integrations.writers.stream.write_instance] (same
    parameters, but the frames are given to ``write`` one batch at a time), so that
    several instances -- the levels of a pyramid -- are written at once, each receiving
    its frames as dask computes them. A local file is opened and its header written at
    once; a remote one spools its items locally. ``close`` checks the frame count and
    fixes the offset table up; ``abort`` leaves no truncated file behind.
    """

    def __init__(
        self,
        ds: Dataset,
        dest: str | os.PathLike[str],
        *,
        number_of_frames: int,
        encapsulated: bool,
        frame_bytes: int,
        storage_options: StorageOptions = None,
        offset_table: str = "auto",
        eot_threshold: int = EOT_THRESHOLD,
        spool_dir: str | None = None,
        pixel_keyword: str = "PixelData",
    ) -> None:
        if offset_table not in ("auto", "bot", "eot", "empty"):
            raise ValueError(f"offset_table must be auto, bot, eot or empty, not {offset_table!r}")
        self.ds, self.dest = ds, os.fspath(dest)
        self.n, self.encapsulated, self.frame_bytes = number_of_frames, encapsulated, frame_bytes
        self.storage_options, self.eot_threshold = storage_options, eot_threshold
        self.element, fixed_vr = PIXEL_ELEMENTS[pixel_keyword]
        self.vr = fixed_vr or ("OW" if int(ds.get("BitsAllocated", 8)) > 8 else "OB")
        self.native_length = self.n * frame_bytes + (self.n * frame_bytes) % 2
        self.local = is_local(dest)
        self.table = offset_table
        self.head = b""
        if self.local:
            self.path = _local_path(dest)
            if self.table == "auto":
                # encoded frames are smaller than twice the decoded ones (plus item headers)
                bound = self.n * (2 * frame_bytes + 1024)
                self.table = "eot" if bound > eot_threshold else "bot"
            if not encapsulated:
                self.table = "none"
            self.fh: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close/abort
            try:
                zeros = [0] * self.n
                eot = self.table == "eot"
                self.head = header_bytes(
                    ds, offsets=zeros if eot else None, lengths=zeros if eot else None
                )
                self.fh.write(self.head)
                self.fh.write(
                    _pixel_header(encapsulated, self.vr, self.native_length, self.element)
                )
                if encapsulated:
                    self.fh.write(_bot(self.n) if self.table == "bot" else _ITEM + b"\x00" * 4)
            except BaseException:
                self.abort()
                raise
        else:
            self.path = self.dest
            self.fh = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115
        self.items = _Items(self.fh, encapsulated)

    def write(self, frames: Iterable[bytes]) -> None:
        """Append ``frames`` (the next ones in frame order)."""
        for frame in frames:
            self.items.write(frame)

    def abort(self) -> None:
        """Close and remove what was written (a failed or interrupted write)."""
        with contextlib.suppress(OSError):
            self.fh.close()
        if self.local:
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def close(self) -> Written:
        """Finish the instance (offset table, ratio, upload) and say what was written."""
        try:
            _check_count(self.items, self.n, self.path)
            if self.local:
                self._finish_local()
            else:
                self._finish_remote()
        except BaseException:
            self.abort()
            raise
        return Written(
            self.path, self.table, np.asarray(self.items.offsets), np.asarray(self.items.lengths)
        )

    def _finish_local(self) -> None:
        fh, items, n, head = self.fh, self.items, self.n, self.head
        if not self.encapsulated and (self.n * self.frame_bytes) % 2:
            fh.write(b"\x00")
        if self.encapsulated:
            fh.write(_DELIMITER)
        if self.table == "bot":
            _check_bot(items, self.path)
            fh.seek(len(head) + 12 + 8)
            fh.write(np.asarray(items.offsets, dtype="<u4").tobytes())
        ratio_at = _ratio_position(head)
        if ratio_at is not None:
            fh.seek(ratio_at)
            fh.write(_ratio_bytes(n * self.frame_bytes, sum(items.lengths)))
        if self.table == "eot":
            # the header ends with the EOT (12 + 8n bytes) and its lengths (12 + 8n)
            fh.seek(len(head) - 2 * (12 + 8 * n) + 12)
            fh.write(np.asarray(items.offsets, dtype="<u8").tobytes())
            fh.seek(len(head) - 8 * n)
            fh.write(np.asarray(items.lengths, dtype="<u8").tobytes())
        fh.close()

    def _finish_remote(self) -> None:
        items, n, spool = self.items, self.n, self.fh
        if not self.encapsulated:
            self.table = "none"
        elif self.table == "auto":
            self.table = "eot" if items.position > self.eot_threshold else "bot"
        if self.table == "bot":
            _check_bot(items, self.dest)
        eot = self.table == "eot"
        head = header_bytes(
            self.ds,
            offsets=items.offsets if eot else None,
            lengths=items.lengths if eot else None,
        )
        ratio_at = _ratio_position(head)
        if ratio_at is not None:
            ratio = _ratio_bytes(n * self.frame_bytes, sum(items.lengths))
            head = head[:ratio_at] + ratio + head[ratio_at + 16 :]
        spool.seek(0)
        fs, path = resolve_fs(self.dest, self.storage_options)
        with fs.open(path, "wb") as out:
            out.write(head)
            out.write(_pixel_header(self.encapsulated, self.vr, self.native_length, self.element))
            if self.table == "bot":
                out.write(_ITEM + struct.pack("<I", 4 * n))
                out.write(np.asarray(items.offsets, dtype="<u4").tobytes())
            elif self.encapsulated:
                out.write(_ITEM + b"\x00" * 4)
            shutil.copyfileobj(spool, out, _COPY_BLOCK)
            if not self.encapsulated and (self.n * self.frame_bytes) % 2:
                out.write(b"\x00")
            if self.encapsulated:
                out.write(_DELIMITER)
        spool.close()


def write_instance(
    ds: Dataset,
    batches: Iterable[Sequence[bytes]],
    dest: str | os.PathLike[str],
    *,
    number_of_frames: int,
    encapsulated: bool,
    frame_bytes: int,
    storage_options: StorageOptions = None,
    offset_table: str = "auto",
    eot_threshold: int = EOT_THRESHOLD,
    spool_dir: str | None = None,
    pixel_keyword: str = "PixelData",
) -> Written:
    """Write ``ds`` and its frames, coming in ordered ``batches``, to ``dest``.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        Everything but Pixel Data (and the offset tables), with its file meta.
    batches : iterable of sequences of bytes
        The encoded frames in frame order, a few tile rows at a time.
    frame_bytes : int
        Bytes of one decoded frame: bounds the encoded size when the table must be
        chosen before the frames are known (local files).
    offset_table : {"auto", "bot", "eot", "empty"}
        ``"auto"``: a BOT, or an EOT when the pixel data may pass ``eot_threshold``.
    eot_threshold : int
        Pixel data size above which ``"auto"`` writes an EOT (4 GiB; lower in tests).
    spool_dir : str, optional
        Where remote destinations spool their items (default: the system's temp dir).
    pixel_keyword : {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}
        The element the frames go to (float data is native only: never encapsulated).
    """
    writer = InstanceWriter(
        ds,
        dest,
        number_of_frames=number_of_frames,
        encapsulated=encapsulated,
        frame_bytes=frame_bytes,
        storage_options=storage_options,
        offset_table=offset_table,
        eot_threshold=eot_threshold,
        spool_dir=spool_dir,
        pixel_keyword=pixel_keyword,
    )
    try:
        for batch in batches:
            writer.write(batch)
    except BaseException:
        # no truncated file left behind (a failed task, an interrupt)
        writer.abort()
        raise
    return writer.close()


def _check_count(items: _Items, n: int, where: str) -> None:
    if len(items.offsets) != n:
        raise InvalidHeaderError(f"{where}: {len(items.offsets)} frames written, {n} declared")


def _check_bot(items: _Items, where: str) -> None:
    if items.offsets and items.offsets[-1] > 0xFFFFFFFF:
        raise InvalidHeaderError(
            f"{where}: the pixel data passes 4 GiB, a Basic Offset Table cannot address "
            "it; use offset_table='eot' or 'auto'"
        )
