"""Opening a series of many small files costs one request per file (issue 31).

A 300-file CT series (as ``benchmarks/make_data.py`` writes it, 128 x 128 slices) is
served by moto (S3), the GCS emulator and nginx, each behind the counting proxy with 50
ms per request. ``open_volume`` sends one ranged GET per file (its ``Content-Range``
gives the size, no HEAD) plus the listing, in a few waves of at most
``io.concurrency`` requests; reading every pixel is one more request per file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dicom_dask
from dicom_dask.testing import loopback, write_series
from tests.servers import start_server

pytestmark = pytest.mark.slow

FILES = 300
LATENCY = 0.05


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """``benchmarks/make_data.py``'s ``ct-300`` series, with 128 x 128 slices."""
    root = tmp_path_factory.mktemp("ct300")
    ct = np.random.default_rng(2).integers(0, 4096, (FILES, 128, 128)).astype(np.uint16)
    # gcp-storage-emulator drops a file's last byte when it is a line break or a space
    ct[:, -1, -1] = 0x0101
    rescale = {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0, "RescaleType": "HU"}
    extra = [{**rescale, "BitsStored": 12, "HighBit": 11}] * FILES
    write_series(root / "ct", ct, pixel_spacing=(0.7, 0.7), shuffle=0, prefix="ct", extra=extra)
    local = dicom_dask.open_volume(root / "ct")
    return root, np.asarray(local.array.compute())


@pytest.fixture(scope="module")
def s3_ct(ct_series: tuple[Path, np.ndarray]) -> Iterator[loopback.ServerProcess]:
    s3fs = pytest.importorskip("s3fs")
    with start_server(loopback.moto_server) as server:
        fs = s3fs.S3FileSystem(
            endpoint_url=server.endpoint, key="k", secret="s", skip_instance_cache=True
        )
        fs.mkdir("ct300")
        fs.put(str(ct_series[0] / "ct") + "/", "ct300/ct/", recursive=True)
        yield server


@pytest.fixture(scope="module")
def gcs_ct(ct_series: tuple[Path, np.ndarray]) -> Iterator[loopback.ServerProcess]:
    gcsfs = pytest.importorskip("gcsfs")
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    with start_server(loopback.gcs_emulator) as server:
        fs = gcsfs.GCSFileSystem(
            token="anon", project="p", endpoint_url=server.endpoint, skip_instance_cache=True
        )
        fs.mkdir("ct300")
        fs.put(str(ct_series[0] / "ct") + "/", "ct300/ct/", recursive=True)
        yield server


@pytest.fixture(scope="module")
def http_ct(ct_series: tuple[Path, np.ndarray]) -> Iterator[loopback.ServerProcess]:
    with start_server(loopback.nginx, ct_series[0]) as server:
        yield server


def _describe(log: list[loopback.LoggedRequest]) -> str:
    return "; ".join(f"{r.method} {r.path[:60]} {r.range}" for r in log[:8])


def _open_and_read(
    proxy: loopback.Proxy, source: Any, options: dict[str, Any], expected: np.ndarray
) -> list[loopback.LoggedRequest]:
    """Open ``source`` through ``proxy``; check the read's requests and pixels; return
    the open's log."""
    proxy.reset()
    volume = dicom_dask.open_volume(source, storage_options=options)
    proxy.opened_in_flight = proxy.max_in_flight  # type: ignore[attr-defined]
    opened = proxy.reset()
    pixels = np.asarray(volume.array.compute())
    read = proxy.reset()
    assert len(read) <= FILES, _describe(read)
    np.testing.assert_array_equal(pixels, expected)
    return opened


def _check_open(
    proxy: loopback.Proxy,
    source: Any,
    options: dict[str, Any],
    opened: list[loopback.LoggedRequest],
    listing: int,
) -> None:
    files = [r for r in opened if r.path.split("?")[0].endswith(".dcm")]
    assert len(opened) <= FILES + listing, _describe(opened)
    assert len(files) == FILES and all(r.method == "GET" and r.range for r in files)
    assert len({r.path for r in files}) == FILES  # one ranged GET per file, no HEAD
    # the first blocks go out in one gather, io.concurrency (128) in flight over as many
    # connections (s3fs's pool is sized to it; aiohttp keeps 100): the listing's waves and
    # ceil(300 / 100) = 3 for the files, 1-2 in all on a quiet machine. The proxy runs in
    # this process: its 100+ threads take the GIL from the client's event loop, and a
    # stall of this process with nothing in flight starts a new wave that is not the
    # library's. So the round trips are the best of up to 3 opens (as a benchmark takes
    # the best of its runs); the requests above are checked on the first
    waves = loopback.round_trips(opened)
    for _ in range(2):
        if waves <= 6:
            break
        proxy.reset()
        dicom_dask.open_volume(source, storage_options=options)
        waves = min(waves, loopback.round_trips(proxy.reset()))
    assert waves <= 6, f"{waves} waves"


@pytest.mark.parametrize("url", ["s3://ct300/ct/", "s3://ct300/ct"])
def test_s3_series_opens_in_one_request_per_file(s3_ct, ct_series, url) -> None:
    with loopback.Proxy(s3_ct.endpoint, latency=LATENCY) as proxy:
        options = {"endpoint_url": proxy.endpoint, "key": "k", "secret": "s"}
        options["skip_instance_cache"] = True  # no listing cached from another test
        opened = _open_and_read(proxy, url, options, ct_series[1])
        # the listing; without "/", the name's GET (404: not a file) before it
        _check_open(proxy, url, options, opened, listing=1 if url.endswith("/") else 2)
        # more requests in flight than botocore's default pool of 10 connections
        assert proxy.opened_in_flight > 10, proxy.opened_in_flight
        # the files named one by one: no listing, the header's GET tells each size
        urls = [f"s3://ct300/ct/ct{k:04d}.dcm" for k in range(FILES)]
        opened = _open_and_read(proxy, urls, options, ct_series[1])
        _check_open(proxy, urls, options, opened, listing=0)


def test_gcs_series_opens_in_one_request_per_file(gcs_ct, ct_series) -> None:
    with loopback.Proxy(gcs_ct.endpoint, latency=LATENCY) as proxy:
        options = {"token": "anon", "project": "p", "endpoint_url": proxy.endpoint}
        options["skip_instance_cache"] = True
        opened = _open_and_read(proxy, "gs://ct300/ct/", options, ct_series[1])
        _check_open(proxy, "gs://ct300/ct/", options, opened, listing=1)
        urls = [f"gs://ct300/ct/ct{k:04d}.dcm" for k in range(FILES)]
        opened = _open_and_read(proxy, urls, options, ct_series[1])
        _check_open(proxy, urls, options, opened, listing=0)


def test_http_series_opens_in_one_request_per_file(http_ct, ct_series) -> None:
    """nginx's folder listing (autoindex) names the files but not their sizes: the
    listing page, then one ranged GET per file whose ``Content-Range`` gives the size."""
    with loopback.Proxy(http_ct.endpoint, latency=LATENCY) as proxy:
        opened = _open_and_read(proxy, f"{proxy.endpoint}/ct/", {}, ct_series[1])
        _check_open(proxy, f"{proxy.endpoint}/ct/", {}, opened, listing=1)
        urls = [f"{proxy.endpoint}/ct/ct{k:04d}.dcm" for k in range(FILES)]
        opened = _open_and_read(proxy, urls, {}, ct_series[1])
        _check_open(proxy, urls, {}, opened, listing=0)
