"""Concurrency: many threads (and process workers) reading random regions of the same
opened slide and volume at once get the same pixels as a single-threaded read."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.testing import series_positions, write_series, write_slide
from tests.conftest import process_cluster

THREADS = 16
REGIONS_PER_THREAD = 200


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("stress")
    rng = np.random.default_rng(20)
    matrix = rng.integers(0, 255, (640, 768, 3), dtype=np.uint8)
    matrix = np.repeat(np.repeat(matrix[::4, ::4], 4, axis=0), 4, axis=1)  # compressible
    write_slide(root / "slide.dcm", matrix, tile=(64, 64), transfer_syntax=uid.JPEGBaseline8Bit)
    volume = rng.integers(0, 4000, (24, 64, 48), dtype=np.uint16)
    write_series(
        root / "series",
        volume,
        positions=series_positions(24, slice_spacing=1.5),
        shuffle=3,
        transfer_syntax=uid.RLELossless,
    )
    slide = dicom_dask.open_slide(root / "slide.dcm", chunk_edge=128)
    vol = dicom_dask.open_volume(root / "series")
    # the single-threaded reads everything is compared with
    return {
        "slide": slide,
        "volume": vol,
        "slide_pixels": slide.levels[0].compute(scheduler="single-threaded"),
        "volume_pixels": vol.array.compute(scheduler="single-threaded"),
        "expected_volume": volume,
    }


def _regions(seed: int, shape: tuple[int, ...], count: int, most: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        region = []
        for n in shape:
            size = int(rng.integers(1, min(most, n) + 1))
            start = int(rng.integers(0, n - size + 1))
            region.append(slice(start, start + size))
        out.append(tuple(region))
    return out


@pytest.mark.slow
def test_threads_reading_random_regions_equal_serial_reads(opened) -> None:
    slide, vol = opened["slide"], opened["volume"]
    slide_pixels, volume_pixels = opened["slide_pixels"], opened["volume_pixels"]
    assert volume_pixels.shape == opened["expected_volume"].shape
    start = threading.Barrier(THREADS)

    def worker(k: int) -> int:
        start.wait()  # every thread begins at once
        rng = np.random.default_rng(1000 + k)
        plane_regions = _regions(k, slide_pixels.shape[:2], REGIONS_PER_THREAD, 160)
        volume_regions = _regions(10_000 + k, volume_pixels.shape, REGIONS_PER_THREAD, 16)
        bad = 0
        for i in range(REGIONS_PER_THREAD):
            if rng.random() < 0.5:
                ys, xs = plane_regions[i]
                got = slide.read_region(
                    (xs.start, ys.start), 0, (xs.stop - xs.start, ys.stop - ys.start)
                )
                bad += not np.array_equal(got, slide_pixels[ys, xs])
            else:
                region = volume_regions[i]
                scheduler = "sync" if i % 3 else "threads"
                got = vol.array[region].compute(scheduler=scheduler)
                bad += not np.array_equal(got, volume_pixels[region])
        return bad

    with ThreadPoolExecutor(THREADS) as pool:
        mismatches = list(pool.map(worker, range(THREADS)))
    assert mismatches == [0] * THREADS


def test_process_workers_reading_random_regions_equal_serial_reads(opened) -> None:
    pytest.importorskip("distributed")
    slide, vol = opened["slide"], opened["volume"]
    level = slide.levels[0]
    plane_regions = _regions(7, level.shape[:2], 40, 200)
    volume_regions = _regions(8, vol.array.shape, 40, 16)
    arrays = [level[r] for r in plane_regions] + [vol.array[r] for r in volume_regions]
    with process_cluster(threads_per_worker=2) as client:
        results = client.gather(client.compute(arrays))
    expected = [opened["slide_pixels"][r] for r in plane_regions] + [
        opened["volume_pixels"][r] for r in volume_regions
    ]
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_regions_cover_the_data(opened) -> None:
    """The random regions are not all tiny or all in one corner (the test can fail)."""
    regions = _regions(0, opened["slide_pixels"].shape[:2], REGIONS_PER_THREAD, 200)
    assert max(r[0].stop for r in regions) > 560 and min(r[0].start for r in regions) < 60
    assert len({(r[0].stop - r[0].start) for r in regions}) > 50


def test_share_runs_each_item_once_in_at_most_the_threads_asked_for() -> None:
    from dicom_dask.frames.threads import share

    seen: list[int] = []
    running = [0]
    peak = [0]
    lock = threading.Lock()

    def func(item: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.002)
        with lock:
            seen.append(item)
            running[0] -= 1

    for threads in (1, 2, 3):
        seen.clear()
        peak[0] = 0
        share(func, list(range(40)), threads)
        assert sorted(seen) == list(range(40))
        assert peak[0] <= threads


def test_share_stops_at_the_first_error_and_raises_it() -> None:
    from dicom_dask.frames.threads import share

    done: list[int] = []

    def func(item: int) -> None:
        if item == 3:
            raise ValueError("item 3 is bad")
        threading.Event().wait(0.002)
        done.append(item)

    with pytest.raises(ValueError, match="item 3 is bad"):
        share(func, list(range(100)), 2)
    assert len(done) < 10  # the others stopped after their current item


def test_share_inside_a_busy_pool_does_not_wait_for_helpers_that_never_start() -> None:
    """Every pool thread runs a ``share``: their helpers cannot start, and are cancelled
    once the calling threads have done all the items themselves."""
    from dicom_dask.frames.threads import pool as decoding_pool
    from dicom_dask.frames.threads import pool_size, share

    pool = decoding_pool()
    workers = pool_size()
    gate = threading.Barrier(workers)

    def outer(k: int) -> int:
        gate.wait(timeout=10)  # every pool thread is busy here
        out: list[int] = []
        share(out.append, list(range(5)), 2)
        return len(out)

    futures = [pool.submit(outer, k) for k in range(workers)]
    results = [f.result(timeout=20) for f in futures]
    assert results == [5] * workers
