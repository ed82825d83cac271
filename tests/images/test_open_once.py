"""A front end reads each listing and header once: deciding what a source holds and
opening it share what was read (``read_once``), and a remote name alone is asked with its
header's first GET, not a HEAD.

Counted through the loopback proxy in front of moto (S3), the GCS emulator and nginx:
``open_source``, ``xarray.open_dataset(engine="dicom")`` and the OpenSlide facade make
the requests of ``open_frames`` for one slide file, and those of ``open_volume`` for a
series folder.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import dicom_dask
from dicom_dask.errors import SourceNotFoundError
from dicom_dask.images import sources
from dicom_dask.images.sources import list_sources, read_once
from dicom_dask.testing import loopback, write_series

#: run on the first CI Python only, as test_open_requests.py (servers behind a proxy)
pytestmark = pytest.mark.slow

BUCKET_BACKENDS = ["s3", "gs"]


@pytest.fixture(params=["s3", "gs", "http"])
def counted(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    """``(name, prefix, storage_options, proxy)``: the session's data tree behind a
    counting proxy."""
    name = request.param
    if name == "http":
        server = request.getfixturevalue("http_server")
    else:
        server, _ = request.getfixturevalue("s3_server" if name == "s3" else "gcs_server")
    with loopback.Proxy(server.endpoint) as proxy:
        if name == "s3":
            options = {"endpoint_url": proxy.endpoint, "key": "testing", "secret": "testing"}
            yield name, "s3://dicom", {**options, "skip_instance_cache": True}, proxy
        elif name == "gs":
            options = {"token": "anon", "project": "dicom-dask", "endpoint_url": proxy.endpoint}
            yield name, "gs://dicom", {**options, "skip_instance_cache": True}, proxy
        else:
            yield name, proxy.endpoint, {}, proxy


def _requests(log: list[loopback.LoggedRequest]) -> collections.Counter[tuple[str, str, str]]:
    return collections.Counter((r.method, r.path, r.range or "") for r in log)


def test_a_named_file_opens_in_the_requests_of_its_frames(counted, data_tree) -> None:
    xr = pytest.importorskip("xarray")
    name, prefix, options, proxy = counted
    url = f"{prefix}/slide/level0.dcm"
    proxy.reset()
    dicom_dask.open_frames(url, storage_options=options)
    alone = proxy.reset()
    assert 1 <= len(alone) <= 2 and all(r.method == "GET" for r in alone)
    opens = {
        "open_slide": lambda: dicom_dask.open_slide(url, storage_options=options),
        "open_source": lambda: dicom_dask.open_source(url, storage_options=options),
        "xarray": lambda: xr.open_dataset(
            url, engine="dicom", backend_kwargs={"storage_options": options}
        ),
        "OpenSlide": lambda: dicom_dask.OpenSlide(url, storage_options=options),
    }
    for front_end, open_ in opens.items():
        opened = open_()
        log = proxy.reset()
        # no HEAD, no byte range asked twice: what open_frames sends, nothing more
        assert _requests(log) == _requests(alone), (front_end, name, log)
        if front_end == "open_slide":
            region = opened.read_region((0, 0), 0, (256, 192))
            local = dicom_dask.open_slide(data_tree / "slide" / "level0.dcm")
            np.testing.assert_array_equal(region, local.read_region((0, 0), 0, (256, 192)))
            proxy.reset()


@pytest.mark.parametrize("slash", ["/", ""])
def test_a_folder_is_listed_once_and_each_header_read_once(counted, slash, data_tree) -> None:
    name, prefix, options, proxy = counted
    if name == "http" and not slash:
        pytest.skip("over HTTP a folder is a URL ending in /")
    url = f"{prefix}/series{slash}"
    proxy.reset()
    volume = dicom_dask.open_source(url, storage_options=options)
    log = proxy.reset()
    files = [r for r in log if r.path.split("?")[0].endswith(".dcm")]
    others = [r for r in log if r not in files]
    assert len(files) == len({r.path for r in files}) == 24, log  # one GET per header
    assert all(r.method == "GET" and r.range for r in files)
    # the listing, and over S3 / GCS without "/" the name's GET (404) before it
    assert len(others) == (1 if slash else 2), others
    assert not any(r.method == "HEAD" for r in log)
    local = dicom_dask.open_volume(data_tree / "series")
    np.testing.assert_array_equal(np.asarray(volume.array), np.asarray(local.array))
    if name != "http" and not slash:
        # a filesystem that listed the folder before (fsspec's cached instance) knows it
        # is one: no GET of the name
        shared = {k: v for k, v in options.items() if k != "skip_instance_cache"}
        for _ in range(2):
            proxy.reset()
            dicom_dask.open_source(url, storage_options=shared)
        log = proxy.reset()
        assert [r for r in log if not r.path.split("?")[0].endswith(".dcm")] == [log[0]]


@pytest.mark.parametrize("name", BUCKET_BACKENDS)
def test_a_missing_name_and_a_bucket(request, name) -> None:
    server, options = request.getfixturevalue("s3_server" if name == "s3" else "gcs_server")
    if name == "gs":
        options = {**options, "endpoint_url": server.endpoint}
    with pytest.raises(SourceNotFoundError, match=rf"{name}://dicom/nothing: no such file"):
        dicom_dask.open_volume(f"{name}://dicom/nothing", storage_options=options)
    # a bucket named alone is listed (no GET of an empty key)
    listing = list_sources(f"{name}://dicom", storage_options=options)
    assert listing.discovered and f"{name}://dicom/series/slice0003.dcm" in listing.urls
    # a file named alone comes with its reader, which index_many reads on
    listing = list_sources(f"{name}://dicom/series/slice0003.dcm", storage_options=options)
    assert not listing.discovered and set(listing.readers) == set(listing.urls)


def test_nothing_is_kept_after_a_call(counted) -> None:
    _, prefix, options, proxy = counted
    url = f"{prefix}/series/slice0003.dcm"
    proxy.reset()
    dicom_dask.open_source(url, storage_options=options)
    first = proxy.reset()
    dicom_dask.open_source(url, storage_options=options)
    assert _requests(proxy.reset()) == _requests(first)  # read again: it may have changed
    with read_once():
        dicom_dask.open_source(url, storage_options=options)
        assert _requests(proxy.reset()) == _requests(first)
        dicom_dask.open_volume(url, storage_options=options)
        dicom_dask.source_kind(url, storage_options=options)
        assert proxy.reset() == []  # inside one block, read once


def test_a_stray_file_of_a_folder_is_read_once(tmp_path, monkeypatch) -> None:
    write_series(tmp_path, np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8))
    (tmp_path / "notes.txt").write_text("not DICOM")
    reads: collections.Counter[str] = collections.Counter()
    real = sources.index_frames

    def counting(url: str, **kwargs: Any) -> Any:
        reads[url] += 1
        return real(url, **kwargs)

    monkeypatch.setattr(sources, "index_frames", counting)
    volume = dicom_dask.open_source(tmp_path)
    assert volume.shape == (3, 8, 8)
    assert len(reads) == 4 and set(reads.values()) == {1}, reads
