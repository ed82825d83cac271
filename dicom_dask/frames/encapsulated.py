"""Byte ranges of encapsulated frames: Extended/Basic Offset Table, or a fragment scan.

Encapsulated pixel data are a sequence of items: the Basic Offset Table (BOT) item,
then one or more fragments per frame, then a sequence delimiter. Offsets in the BOT
and the Extended Offset Table (EOT) count from the first byte of the first fragment
item's tag. When neither table is usable, item headers are scanned (in large blocks remotely).
"""

from __future__ import annotations

import itertools
import os
import struct
import warnings
from array import array
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from fsspec.implementations.local import LocalFileSystem
from pydicom import uid as _uid

from dicom_dask.enums import ITEM_TAG, SEQUENCE_DELIMITER, FrameEncoding
from dicom_dask.errors import OffsetTableError, TruncatedFileError
from dicom_dask.frames.header import DicomHeader
from dicom_dask.frames.ranges import FrameRanges
from dicom_dask.frames.source import BlockReader, Source

__all__ = ["Fragment", "encapsulated_ranges", "scan_fragments"]

#: Bytes fetched per request while scanning item headers.
SCAN_BLOCK = 4 * 1024 * 1024
#: Offset table entries checked against the items they point at.
CHECKED_ENTRIES = 8

_JPEG_SYNTAXES = frozenset(
    {
        _uid.JPEGBaseline8Bit,
        _uid.JPEGExtended12Bit,
        _uid.JPEGLossless,
        _uid.JPEGLosslessSV1,
        _uid.JPEGLSLossless,
        _uid.JPEGLSNearLossless,
    }
)
_J2K_SYNTAXES = frozenset(
    {_uid.JPEG2000Lossless, _uid.JPEG2000, _uid.HTJ2KLossless, _uid.HTJ2KLosslessRPCL, _uid.HTJ2K}
)


class Fragment(NamedTuple):
    """One fragment item: where its tag starts, its value length, its first bytes."""

    offset: int
    length: int
    head: bytes


class OffsetTableWarning(UserWarning):
    """An offset table was unusable and the fragments were scanned instead."""


def _tag_name(raw: bytes) -> str:
    if len(raw) < 4:
        return "end of file"
    group, elem = struct.unpack("<HH", raw[:4])
    return f"({group:04X},{elem:04X})"


def scan_fragments(reader: BlockReader, start: int, *, block: int = SCAN_BLOCK) -> list[Fragment]:
    """Walk the fragment items from ``start`` to the sequence delimiter.

    Item headers are read from blocks of ``block`` bytes (a fragment larger than a
    block costs one more request at its end, never one request per small item). A
    local file is walked with ``os.pread`` of each 16-byte item head instead: it
    reads kilobytes, not the whole pixel data.
    """
    source = reader.source
    if type(source.fs) is LocalFileSystem:
        reader.requests += 1
        return _walk_local(source, start)
    buf, buf_start = b"", start

    def fetch(pos: int) -> tuple[bytes, int]:
        nonlocal buf, buf_start
        need = min(pos + 16, source.size)
        if not (buf_start <= pos and need <= buf_start + len(buf)):
            stop = min(pos + block, source.size)
            cached = reader.cached(pos, stop)
            if cached is None:
                cached = source.read(pos, stop)
                reader.requests += 1
            buf, buf_start = cached, pos
        return buf, buf_start

    return _walk(source, start, fetch)


_ITEM_HEAD = struct.Struct("<HHL")


def _scan_local(source: Source, start: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """The items of a local file from ``start``: ``(offsets, lengths, heads)``.

    One ``os.preadv`` of each 16-byte item head into one buffer (the fastest of
    pread, a memory map and block reads measured on 4,096 items), and no Python
    object per item (thousands of them would trigger garbage collections that cost
    more than the reads). ``heads`` holds the first 8 value bytes of each item.
    The item that ends the walk gets the checks and errors of ``_walk``.
    """
    size = source.size
    offsets, lengths, heads = array("q"), array("q"), bytearray()
    buf = bytearray(16)
    view = memoryview(buf)
    unpack = _ITEM_HEAD.unpack_from
    preadv = os.preadv
    fd = os.open(source.path, os.O_RDONLY)
    try:
        pos = start
        while pos + 8 <= size:
            got = preadv(fd, [buf], pos)
            if got < 8:
                raise TruncatedFileError(
                    f"{source.url}: the file ends inside the item header at byte {pos} "
                    f"(it was {size} bytes when opened)"
                )
            if got < 16:
                buf[got:] = bytes(16 - got)
            group, element, length = unpack(buf)
            if group != 0xFFFE or element != 0xE000:
                break  # the delimiter, or an error: _walk says which, from here
            if length == 0xFFFFFFFF or pos + 8 + length > size:
                break
            offsets.append(pos)
            lengths.append(length)
            heads += view[8:16]
            pos += 8 + length
        last = bytes(buf)
    finally:
        os.close(fd)
    if pos != size:  # the item at ``pos`` ends the walk: the sequence delimiter or an error
        _walk(source, pos, lambda _: (last, pos))
    return np.frombuffer(offsets, np.int64), np.frombuffer(lengths, np.int64), bytes(heads)


def _walk_local(source: Source, start: int) -> list[Fragment]:
    offsets, lengths, heads = _scan_local(source, start)
    return [
        Fragment(o, n, heads[8 * i : 8 * i + 8])
        for i, (o, n) in enumerate(zip(offsets.tolist(), lengths.tolist(), strict=True))
    ]


def _walk(source: Source, start: int, fetch: Callable[[int], tuple[bytes, int]]) -> list[Fragment]:
    url, size = source.url, source.size
    fragments: list[Fragment] = []
    pos = start
    while True:
        if pos == size:  # tolerate a missing sequence delimiter at the end of file
            break
        if pos + 8 > size:
            raise TruncatedFileError(
                f"{url}: the file ends at byte {size}, inside the item header at byte {pos}"
            )
        buf, buf_start = fetch(pos)
        rel = pos - buf_start
        tag = buf[rel : rel + 4]
        (length,) = struct.unpack("<L", buf[rel + 4 : rel + 8])
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM_TAG:
            raise OffsetTableError(
                f"{url}: expected a fragment item tag (FFFE,E000) or the sequence "
                f"delimiter (FFFE,E0DD) at byte {pos}, found {_tag_name(tag)}"
            )
        if length == 0xFFFFFFFF or pos + 8 + length > size:
            raise TruncatedFileError(
                f"{url}: the fragment item at byte {pos} claims {length} bytes, but the "
                f"file ends at byte {size}"
            )
        fragments.append(Fragment(pos, length, buf[rel + 8 : rel + 16]))
        pos += 8 + length
    return fragments


def _is_frame_start(head: bytes, tsyntax: str) -> bool:
    if tsyntax in _JPEG_SYNTAXES:
        return head[:2] == b"\xff\xd8"
    if tsyntax in _J2K_SYNTAXES:
        return head[:4] == b"\xff\x4f\xff\x51" or head[:8] == b"\x00\x00\x00\x0cjP  "
    return False


def _group_fragments(fragments: list[Fragment], header: DicomHeader) -> list[list[Fragment]]:
    url, nframes = header.url, header.description.number_of_frames
    if not fragments:
        raise OffsetTableError(f"{url}: the encapsulated pixel data hold no fragment")
    if len(fragments) == nframes:
        return [[f] for f in fragments]
    if nframes == 1:
        return [fragments]
    if len(fragments) < nframes:
        raise OffsetTableError(
            f"{url}: found {len(fragments)} fragments but (0028,0008) 'Number of Frames' "
            f"is {nframes}; each frame needs at least one fragment"
        )
    tsyntax = header.transfer_syntax
    starts = [i for i, f in enumerate(fragments) if _is_frame_start(f.head, tsyntax)]
    if not starts or starts[0] != 0 or len(starts) < nframes:
        raise OffsetTableError(
            f"{url}: {len(fragments)} fragments for {nframes} frames and no usable offset "
            f"table; cannot tell where frames start for transfer syntax {tsyntax.name} "
            f"(found {len(starts)} frame start markers)"
        )
    starts = [*starts[:nframes], len(fragments)]
    return [fragments[a:b] for a, b in itertools.pairwise(starts)]


def _ranges_from_groups(groups: list[list[Fragment]], method: str) -> FrameRanges:
    n = len(groups)
    counts = np.fromiter((len(g) for g in groups), dtype=np.uint32, count=n)
    first = np.fromiter((g[0].offset for g in groups), dtype=np.uint64, count=n)
    last = np.fromiter((g[-1].offset for g in groups), dtype=np.uint64, count=n)
    last_len = np.fromiter((g[-1].length for g in groups), dtype=np.uint64, count=n)
    single = counts == 1
    # one fragment: its value; several: the items, headers included
    offsets = np.where(single, first + np.uint64(8), first)
    lengths = np.where(single, last_len, last + np.uint64(8) + last_len - first)
    encoding = np.where(single, FrameEncoding.RAW.value, FrameEncoding.ITEMS.value).astype(np.uint8)
    return FrameRanges(offsets, lengths, encoding, counts, 1, method)


def _check_items(
    reader: BlockReader, starts: np.ndarray, indices: list[int]
) -> list[tuple[int, bytes]]:
    """Read the 8-byte headers at ``starts[indices]``; return (index, header) pairs."""
    size = reader.source.size
    wanted = [(i, int(starts[i])) for i in indices if int(starts[i]) + 8 <= size]
    heads = reader.read_ranges([(s, s + 8) for _, s in wanted])
    return [(i, h) for (i, _), h in zip(wanted, heads, strict=True)]


def _sample(reader: BlockReader, starts: np.ndarray) -> list[int]:
    """Entries to check: the first and last always, others only if already in memory."""
    n = len(starts)
    picks = {0, n - 1}
    if n > 2:
        for i in np.linspace(1, n - 2, min(CHECKED_ENTRIES, n - 2)).astype(int).tolist():
            if reader.cached(int(starts[i]), int(starts[i]) + 8) is not None:
                picks.add(i)
    return sorted(picks)


def _from_eot(reader: BlockReader, header: DicomHeader, first: int) -> FrameRanges | str:
    ds, nframes, size = header.dataset, header.description.number_of_frames, header.file_size
    try:
        offsets = np.frombuffer(bytes(ds.ExtendedOffsetTable), dtype="<u8").astype(np.uint64)
        lengths = np.frombuffer(bytes(ds.ExtendedOffsetTableLengths), dtype="<u8").astype(np.uint64)
    except (AttributeError, ValueError) as exc:
        return f"cannot parse (7FE0,0001)/(7FE0,0002): {exc}"
    if offsets.size != nframes or lengths.size != nframes:
        return (
            f"(7FE0,0001) has {offsets.size} entries and (7FE0,0002) {lengths.size}, "
            f"expected {nframes}"
        )
    starts = offsets + np.uint64(first)
    ends = starts + np.uint64(8) + lengths
    if offsets[0] != 0 or np.any(starts[1:] < ends[:-1]) or int(ends[-1]) > size:
        return "its offsets are not increasing, overlap, or point past the end of the file"
    for i, head in _check_items(reader, starts, _sample(reader, starts)):
        (length,) = struct.unpack("<L", head[4:8])
        if head[:4] != ITEM_TAG or length != int(lengths[i]):
            return (
                f"entry {i} points at byte {int(starts[i])}, where there is "
                f"{_tag_name(head)} with length {length}, expected an item of "
                f"{int(lengths[i])} bytes"
            )
    return FrameRanges(
        offsets=starts + np.uint64(8),
        lengths=lengths,
        encoding=np.full(nframes, FrameEncoding.RAW.value, dtype=np.uint8),
        fragments=np.ones(nframes, dtype=np.uint32),
        frames_per_chunk=1,
        method="eot",
    )


def _from_bot(
    reader: BlockReader, header: DicomHeader, bot: np.ndarray, first: int
) -> FrameRanges | str:
    nframes, size, url = header.description.number_of_frames, header.file_size, header.url
    if bot.size != nframes:
        return f"it has {bot.size} entries, expected {nframes} (one per frame)"
    starts = bot.astype(np.uint64) + np.uint64(first)
    if bot[0] != 0 or np.any(np.diff(bot.astype(np.int64)) < 8) or int(starts[-1]) + 8 > size:
        return "its offsets do not start at 0, are not increasing, or point past the file"
    # Read the last frame's item with enough after it to see the sequence delimiter:
    # one request for the usual single-fragment last frame.
    last = int(starts[-1])
    mean = (last - int(starts[0])) // max(nframes - 1, 1)
    (tail_block,) = reader.read_ranges([(last, min(size, last + 2 * mean + 4096))])
    checks = _check_items(reader, starts, [i for i in _sample(reader, starts) if i != nframes - 1])
    checks.append((nframes - 1, tail_block[:8]))
    for i, head in checks:
        if head[:4] != ITEM_TAG:
            return f"entry {i} points at byte {int(starts[i])}, where there is {_tag_name(head)}"
    (last_len,) = struct.unpack("<L", tail_block[4:8])
    after = last + 8 + last_len
    if after > size:
        raise TruncatedFileError(
            f"{url}: the last frame's item at byte {last} claims {last_len} bytes, but the "
            f"file ends at byte {size}"
        )
    if after + 8 <= last + len(tail_block):
        tail = tail_block[after - last : after - last + 8]
    else:
        tail = reader.read_ranges([(after, min(after + 8, size))])[0]
    if tail[:4] == ITEM_TAG:  # the last frame has more fragments
        tail_fragments = scan_fragments(reader, last)
        end = tail_fragments[-1].offset + 8 + tail_fragments[-1].length
    elif tail[:4] == SEQUENCE_DELIMITER or after == size:
        end = after
    else:
        return (
            f"after the last frame's item (byte {after}) there is {_tag_name(tail)}, "
            "expected an item or the sequence delimiter"
        )
    stops = np.append(starts[1:], np.uint64(end))
    return FrameRanges(
        offsets=starts,
        lengths=stops - starts,
        encoding=np.full(nframes, FrameEncoding.ITEMS.value, dtype=np.uint8),
        fragments=np.zeros(nframes, dtype=np.uint32),
        frames_per_chunk=1,
        method="bot",
    )


def encapsulated_ranges(reader: BlockReader, header: DicomHeader) -> FrameRanges:
    """Return the byte range of every encapsulated frame of ``header``'s file.

    The Extended Offset Table is used when present, then the Basic Offset Table;
    either is checked against the items it points at (the first, last and a few
    between) and, when wrong, a warning is issued and the fragments are scanned.
    """
    url, size = header.url, header.file_size
    v0 = header.element.value_offset
    if v0 + 8 > size:
        raise TruncatedFileError(
            f"{url}: the file ends at byte {size}, before the Basic Offset Table item at byte {v0}"
        )
    (head,) = reader.read_ranges([(v0, v0 + 8)])
    if head[:4] != ITEM_TAG:
        raise OffsetTableError(
            f"{url}: expected the Basic Offset Table item tag (FFFE,E000) at byte {v0}, "
            f"found {_tag_name(head)}"
        )
    (bot_len,) = struct.unpack("<L", head[4:8])
    first = v0 + 8 + bot_len
    if bot_len % 4 or first > size:
        raise OffsetTableError(
            f"{url}: the Basic Offset Table at byte {v0} claims {bot_len} bytes; expected a "
            f"multiple of 4 that ends within the file of {size} bytes"
        )
    problem: str | None = None
    if "ExtendedOffsetTable" in header.dataset:
        eot = _from_eot(reader, header, first)
        if isinstance(eot, FrameRanges):
            return eot
        problem = f"the Extended Offset Table is unusable: {eot}"
    elif bot_len:
        (raw,) = reader.read_ranges([(v0 + 8, first)])
        bot = np.frombuffer(raw, dtype="<u4")
        result = _from_bot(reader, header, bot, first)
        if isinstance(result, FrameRanges):
            return result
        problem = f"the Basic Offset Table at byte {v0} is unusable: {result}"
    if problem is not None:
        warnings.warn(
            f"{url}: {problem}; scanning the fragments instead", OffsetTableWarning, stacklevel=3
        )
    nframes = header.description.number_of_frames
    if type(reader.source.fs) is LocalFileSystem:
        reader.requests += 1
        offsets, lengths, _ = _scan_local(reader.source, first)
        if 0 < offsets.size == nframes:  # one fragment per frame: the ranges at once
            return FrameRanges(
                offsets=offsets.astype(np.uint64) + np.uint64(8),
                lengths=lengths.astype(np.uint64),
                encoding=np.full(nframes, FrameEncoding.RAW.value, dtype=np.uint8),
                fragments=np.ones(nframes, dtype=np.uint32),
                frames_per_chunk=1,
                method="scan",
            )
    groups = _group_fragments(scan_fragments(reader, first), header)
    return _ranges_from_groups(groups, "scan")
