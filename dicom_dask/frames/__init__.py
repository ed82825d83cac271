"""Bytes-level DICOM over fsspec: the header, and the byte range of every frame.

Nothing here imports zarr or dask.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from dicom_dask.enums import FrameEncoding
from dicom_dask.frames.encapsulated import encapsulated_ranges, scan_fragments
from dicom_dask.frames.header import DicomHeader, PixelDescription, read_header
from dicom_dask.frames.native import native_ranges
from dicom_dask.frames.ranges import FrameRanges
from dicom_dask.frames.source import BlockReader, Source, open_file, open_reader, open_readers
from dicom_dask.frames.storage import canonical_url
from dicom_dask.frames.version import FileVersion
from dicom_dask.types import StorageOptions

__all__ = [
    "BlockReader",
    "DicomHeader",
    "FileVersion",
    "FrameIndex",
    "FrameRanges",
    "PixelDescription",
    "Source",
    "canonical_url",
    "index_frames",
    "open_file",
    "open_reader",
    "open_readers",
    "scan_fragments",
    "versions_of",
]


@dataclass(frozen=True, eq=False)
class FrameIndex:
    """A file's header and the byte ranges of its frames, grouped in chunks."""

    header: DicomHeader
    ranges: FrameRanges
    #: Requests sent to build this index (header, offset tables, scan).
    requests: int
    #: What identifies the version of the file indexed, besides its size (``etag``,
    #: ``generation``, ``mtime``: see [`Source`][dicom_dask.frames.source.Source]).
    identity: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The canonical URL of the file."""
        return self.header.url

    @property
    def version(self) -> FileVersion:
        """The version of the file indexed (size and identity): reads check it."""
        return FileVersion(size=int(self.header.file_size), identity=dict(self.identity))


def versions_of(indexes: Iterable[FrameIndex]) -> dict[str, FileVersion]:
    """URL -> [`version`][dicom_dask.frames.FrameIndex.version] of each index (DICOMweb
    instances, read by frame number, have none)."""
    return {ix.url: ix.version for ix in indexes if not ix.url.startswith("dicomweb+")}


def index_frames(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    filesystem: fsspec.AbstractFileSystem | None = None,
    first_block: int = 65536,
    info: Mapping[str, Any] | None = None,
    reader: BlockReader | None = None,
) -> FrameIndex:
    """Read the header of ``url`` and locate every frame, reading no pixel data.

    Parameters
    ----------
    url : str or path-like
        A local path or any fsspec URL (``s3://``, ``gs://``, ``https://``, chained).
    storage_options : mapping, optional
        Passed to the fsspec filesystem.
    filesystem : fsspec.AbstractFileSystem, optional
        A ready filesystem, used instead of building one from ``url``.
    first_block : int
        Size of the first header request; later ones double.
    info : mapping, optional
        What a listing reported for the file (fsspec's ``find(detail=True)`` entry: its
        ``size``, ETag...): then no request asks for the size. Without it, over HTTP, S3
        and GCS the first header request tells the size as well (see
        [`open_reader`][dicom_dask.frames.source.open_reader]).
    reader : BlockReader, optional
        The file already opened (by [`open_readers`][dicom_dask.frames.source.open_readers]):
        its first block read.
    """
    reader = reader or open_reader(
        url,
        storage_options=storage_options,
        filesystem=filesystem,
        info=info,
        first_block=first_block,
    )
    source = reader.source
    header = read_header(reader)
    if header.inline_pixel_data is not None:
        ranges = _inline_ranges(header)
    elif header.is_encapsulated:
        ranges = encapsulated_ranges(reader, header)
    else:
        ranges = native_ranges(header)
    return FrameIndex(
        header=header, ranges=ranges, requests=reader.requests, identity=source.identity
    )


def _inline_ranges(header: DicomHeader) -> FrameRanges:
    """Ranges into the in-memory pixel data of a deflated dataset."""
    from dataclasses import replace

    native = native_ranges(header)
    return replace(
        native,
        encoding=np.full(len(native), FrameEncoding.RAW.value, dtype=np.uint8),
        method="inline",
    )
