"""A remote file opens with one ranged GET: its reply tells the size and the same
identity (ETag, Last-Modified, generation) a metadata request (HEAD) would (issue 31)."""

from __future__ import annotations

import fsspec
import pytest

from dicom_dask.errors import ReadError, SourceNotFoundError
from dicom_dask.frames import index_frames, open_reader
from dicom_dask.frames.source import file_identity


def test_one_request_and_the_identity_info_reports(backend) -> None:
    url = backend.url("series/slice0003.dcm")
    index = index_frames(url, storage_options=backend.storage_options, first_block=4096)
    fs, path = fsspec.core.url_to_fs(url, **backend.storage_options)
    info = fs.info(path)
    assert index.header.file_size == info["size"]
    reported = file_identity(info)
    # the reply's identity is what info() reports (GCS: the generation; its media
    # download's ETag is not the object resource's)
    assert index.identity.items() <= reported.items()
    # gcp-storage-emulator sends no x-goog-generation (GCS does)
    assert index.identity or backend.name == "gs"
    if backend.name != "local":
        assert index.requests <= 2  # the ranged GET (and the header's rest, if any)
        reader = open_reader(url, storage_options=backend.storage_options, first_block=4096)
        assert reader.requests == 1 and reader.cached(0, 4096) is not None
        assert reader.source.size == info["size"]


def test_missing_file_and_folder(backend) -> None:
    with pytest.raises(SourceNotFoundError, match=r"nothere\.dcm"):
        index_frames(backend.url("series/nothere.dcm"), storage_options=backend.storage_options)
    if backend.name in ("s3", "gs", "local"):
        with pytest.raises(ReadError, match="is a directory"):
            index_frames(backend.url("series"), storage_options=backend.storage_options)
