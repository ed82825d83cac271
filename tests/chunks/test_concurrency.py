"""The one concurrency setting: ``dicom_dask.config`` ``threads`` and ``io.concurrency``
decide how many threads decode and how many requests are in flight, everywhere."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from pydicom import uid

import dicom_dask
import dicom_dask.config
from dicom_dask.frames import threads as frame_threads
from dicom_dask.testing import loopback, write_slide
from tests.servers import SLIDE_TILE

REGION = ((1000, 1500), (2048, 2048))


def _runs_at_once(pool: Any, tasks: int, expected: int) -> bool:
    """Whether ``pool`` runs exactly ``expected`` of ``tasks`` blocking tasks at once."""
    started = threading.Semaphore(0)
    release = threading.Event()

    def task() -> None:
        started.release()
        release.wait(30)

    futures = [pool.submit(task) for _ in range(tasks)]
    try:
        running = sum(started.acquire(timeout=10) for _ in range(expected))
        more = started.acquire(timeout=0.3)  # one more would have started by now
    finally:
        release.set()
        for future in futures:
            future.result(timeout=30)
    return running == expected and not more


def test_threads_setting_sizes_the_decoding_pool() -> None:
    default = max(2, os.cpu_count() or 1)
    assert frame_threads.pool_size() == default  # today's default: max(2, cores)
    with dicom_dask.config.set(threads=3):
        assert dicom_dask.config.threads() == 3
        assert frame_threads.pool_size() == 3
        assert _runs_at_once(frame_threads.pool(), 5, 3)
    with dicom_dask.config.set(threads=5):
        assert _runs_at_once(frame_threads.pool(), 7, 5)
    assert frame_threads.pool_size() == default


def test_threads_setting_reaches_zarr_and_the_direct_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zarr's reads (dicom_dask's pipeline) and ``read_region`` decode in as many
    threads as ``threads`` says; zarr's ``threading.max_workers`` stands in when unset."""
    matrix = np.random.default_rng(0).integers(0, 255, (96, 128), dtype=np.uint8)
    slide = dicom_dask.open_slide(
        write_slide(tmp_path / "s.dcm", matrix, tile=(32, 32), transfer_syntax=uid.RLELossless)
    )
    asked: list[int] = []
    share = frame_threads.share

    def spy(func: Any, items: list[Any], threads: int) -> None:
        asked.append(threads)
        share(func, items, threads)

    monkeypatch.setattr(frame_threads, "share", spy)
    level = slide.zarr["0"]
    for setting, expected in ((3, 3), (1, 1)):
        asked.clear()
        with dicom_dask.config.set(threads=setting):
            np.testing.assert_array_equal(np.asarray(level[...]).reshape(matrix.shape), matrix)
        assert asked == [expected]
    asked.clear()
    with zarr.config.set({"threading.max_workers": 2}):
        level[...]
    assert asked == [2]
    with dicom_dask.config.set(threads=1):
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (128, 96)), matrix)


def test_threads_setting_splits_a_loop_pass() -> None:
    """The zarr codec's decoding of one event-loop pass goes to ``threads()`` jobs:
    with 2 threads, 10 items run as 2 jobs of 5, each job in one thread."""
    import asyncio

    passes = frame_threads.LoopPass(frame_threads.run_in_threads)
    ran: list[tuple[int, int]] = []

    def item(k: int) -> int:
        ran.append((k, threading.get_ident()))
        return k

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(passes.submit(lambda k=k: item(k)) for k in range(10))))

    with dicom_dask.config.set(threads=2):
        assert asyncio.run(main()) == list(range(10))
    by_item = dict(ran)
    assert len({by_item[k] for k in range(5)}) == 1 and len({by_item[k] for k in range(5, 10)}) == 1


def test_io_concurrency_bounds_requests_in_flight_on_the_zarr_path(proxy) -> None:
    """zarr's asynchronous reads of a remote slide keep at most ``io.concurrency``
    requests in flight (the direct reader's bound is checked in tests/images/test_remote)."""
    url = f"{proxy.endpoint}/slide/level0.dcm"
    slide = dicom_dask.open_slide(url)
    level = slide.zarr["0"]
    (x, y), (w, h) = REGION
    proxy.latency = 0.02
    proxy.reset()
    level[:, y : y + h, x : x + w]
    assert proxy.max_in_flight >= 4  # tile rows in flight together
    with dicom_dask.config.set({"io.concurrency": 2}):
        proxy.reset()
        level[:, y : y + h, x : x + w]
        assert 1 <= proxy.max_in_flight <= 2


def test_io_concurrency_bounds_dicomweb_requests_in_flight(dicomweb_server, data_tree) -> None:
    """DICOMweb frame requests (one per run of frames, i.e. per tile row of a region)
    keep at most ``io.concurrency`` in flight."""
    import pydicom

    server, _ = dicomweb_server
    ds = pydicom.dcmread(data_tree / "slide" / "level0.dcm", stop_before_pixels=True)
    with loopback.Proxy(server.endpoint) as proxy:
        url = (
            f"dicomweb+{proxy.endpoint}/dicom-web/studies/{ds.StudyInstanceUID}"
            f"/series/{ds.SeriesInstanceUID}"
        )
        slide = dicom_dask.open_slide(url)
        (x, y), (w, h) = REGION
        rows = (y + h - 1) // SLIDE_TILE - y // SLIDE_TILE + 1
        proxy.latency = 0.05
        proxy.reset()
        slide.read_region((x, y), 0, (w, h))
        assert proxy.max_in_flight >= min(4, rows)
        with dicom_dask.config.set({"io.concurrency": 2}):
            proxy.reset()
            slide.read_region((x, y), 0, (w, h))
            assert 1 <= proxy.max_in_flight <= 2
            assert len(proxy.log) == rows
