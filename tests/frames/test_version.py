"""The one rule that compares a recorded file version with what a reply or ``stat`` says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicom_dask.errors import ReadError, StaleIndexError
from dicom_dask.frames.fetch import fetch_spans, held_by, pread, pread_ranges
from dicom_dask.frames.version import FileVersion, check_version, local_identity


def test_size_etag_and_generation_are_compared() -> None:
    v = FileVersion(size=10, identity={"etag": '"abc"', "generation": "7", "mtime": "t1"})
    assert v.differences(10, {"etag": '"abc"', "generation": "7", "mtime": "t1"}) == []
    assert v.differences(11, {}) == ["size 10 != 11"]
    assert v.differences(None, {"etag": '"abd"'}) == ['etag "abc" != "abd"']
    assert v.differences(10, {"generation": "8"}) == ["generation 7 != 8"]


def test_an_etag_is_one_version_with_or_without_quotes_and_weak_marker() -> None:
    v = FileVersion(size=1, identity={"etag": '"abc"'})
    assert v.differences(1, {"etag": 'W/"abc"'}) == []
    assert v.differences(1, {"etag": "abc"}) == []


def test_times_count_only_when_no_etag_or_generation_is_shared() -> None:
    """A listing's ``LastModified`` has milliseconds, a GET's ``Last-Modified`` whole
    seconds: with the ETag on both sides the times are not compared."""
    v = FileVersion(size=1, identity={"etag": "e", "mtime": "2026-12-07T05:21:13.123000+00:00"})
    assert v.differences(1, {"etag": "e", "mtime": "2026-12-07T05:21:13+00:00"}) == []
    local = FileVersion(size=1, identity={"mtime": "1.5"})
    assert local.differences(1, {"mtime": "2.5"}) == ["mtime 1.5 != 2.5"]
    assert local.differences(1, {}) == []  # nothing known on the other side: size only


def test_check_version_names_the_file_and_the_read() -> None:
    v = FileVersion(size=10, identity={"etag": "a"})
    check_version("s3://b/k.dcm", None, size=3, identity={}, where="x")  # no version: no check
    with pytest.raises(StaleIndexError, match=r"s3://b/k\.dcm: .*reading bytes \[4, 8\).*size"):
        check_version("s3://b/k.dcm", v, size=12, identity={}, where="reading bytes [4, 8)")


def test_local_reads_check_the_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(bytes(range(100)))
    version = FileVersion(size=100, identity=local_identity(os.stat(path)))
    assert pread(str(path), 2, 5, version=version) == bytes([2, 3, 4])
    assert pread_ranges(str(path), [(0, 2), (98, 100)], version=version) == [b"\0\1", b"bc"]
    st = os.stat(path)
    os.utime(path, (st.st_atime, st.st_mtime + 5))
    with pytest.raises(StaleIndexError, match=r"f\.dcm.*mtime"):
        pread(str(path), 2, 5, version=version)
    # through the fetch layer: the error says which spans it held
    (tmp_path / "other").write_bytes(b"12")
    with pytest.raises(StaleIndexError) as caught:
        fetch_spans(
            [(str(tmp_path / "other"), 0, 2), (str(path), 0, 4), (str(path), 8, 9)],
            versions={str(path): version},
        )
    assert caught.value.requests == [1, 2]  # type: ignore[attr-defined]


def test_held_by_maps_failed_requests_to_the_callers_items() -> None:
    error = ReadError("x")
    error.requests = [1]  # type: ignore[attr-defined]
    with pytest.raises(ReadError) as caught, held_by([[0], [3, 4]]):
        raise error
    assert caught.value.requests == [3, 4]  # type: ignore[attr-defined]


def test_s3_connection_pool_follows_io_concurrency() -> None:
    """botocore keeps 10 connections: requests beyond them would queue behind, whatever
    ``io.concurrency`` says; the user's own pool size wins."""
    pytest.importorskip("s3fs")
    import dicom_dask
    from dicom_dask.frames.storage import resolve_fs

    options = {"anon": True, "skip_instance_cache": True}
    with dicom_dask.config.set({"io.concurrency": 48}):
        fs, _ = resolve_fs("s3://bucket/key.dcm", options)
        assert fs.config_kwargs["max_pool_connections"] == 48
        mine = {**options, "config_kwargs": {"max_pool_connections": 5}}
        fs, _ = resolve_fs("s3://bucket/key.dcm", mine)
        assert fs.config_kwargs["max_pool_connections"] == 5
        fs, _ = resolve_fs("https://host/key.dcm", {})  # other filesystems: untouched
        assert "config_kwargs" not in getattr(fs, "kwargs", {})


def test_a_folder_of_symbolic_links_is_checked_against_the_targets(tmp_path: Path) -> None:
    """fsspec lists a link with the link's own time; reads ``fstat`` the target: the
    version recorded from a listing is the target's, so an untouched target reads and a
    rewritten one is caught."""
    import numpy as np

    import dicom_dask
    from dicom_dask.testing import write_series

    write_series(tmp_path / "files", np.zeros((3, 8, 8), np.uint16), shuffle=0, prefix="s")
    (tmp_path / "links").mkdir()
    for target in sorted((tmp_path / "files").iterdir()):
        (tmp_path / "links" / target.name).symlink_to(target)
    volume = dicom_dask.open_volume(tmp_path / "links")
    assert volume.array.compute().shape == (3, 8, 8)
    target = tmp_path / "files" / "s0001.dcm"
    st = target.stat()
    os.utime(target, (st.st_atime, st.st_mtime + 5))
    with pytest.raises(StaleIndexError, match=r"links/s0001\.dcm"):
        volume.array.compute()
