"""Transient read failures are retried with bounded backoff; permanent ones fail at once."""

from __future__ import annotations

import time

import fsspec
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem
from pydicom import uid

import dicom_dask
from dicom_dask.errors import ReadError, SourceNotFoundError
from dicom_dask.frames import fetch
from dicom_dask.testing import write_dicom


class ServerError(Exception):
    """Like aiohttp's ClientResponseError: carries an HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FlakyFileSystem(LocalFileSystem):
    """A local filesystem whose reads fail ``failures`` times before succeeding."""

    protocol = ("flaky",)
    cachable = False
    failures = 0
    error: BaseException = ConnectionResetError("connection reset by peer")
    calls = 0

    def cat_file(self, path, start=None, end=None, **kwargs):  # type: ignore[no-untyped-def]
        FlakyFileSystem.calls += 1
        if FlakyFileSystem.failures > 0:
            FlakyFileSystem.failures -= 1
            raise FlakyFileSystem.error
        return super().cat_file(path, start=start, end=end, **kwargs)

    def cat_ranges(self, paths, starts, ends, max_gap=None, on_error="return", **kwargs):  # type: ignore[no-untyped-def]
        return [self.cat_file(p, s, e) for p, s, e in zip(paths, starts, ends, strict=True)]


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    monkeypatch.setattr(fetch, "RETRY", fetch.RetryPolicy(attempts=5, first_delay=0.001))
    arr = np.random.default_rng(1).integers(0, 255, (6, 16, 16), dtype=np.uint8)
    path = write_dicom(tmp_path / "rle.dcm", arr, transfer_syntax=uid.RLELossless)
    FlakyFileSystem.calls = 0
    FlakyFileSystem.failures = 0
    return "flaky://" + str(path), arr


@pytest.mark.parametrize(
    "error",
    [ConnectionResetError("reset"), TimeoutError("slow"), ServerError(503), ServerError(429)],
)
def test_transient_errors_are_retried(flaky, error) -> None:
    url, arr = flaky
    FlakyFileSystem.error = error
    FlakyFileSystem.failures = 3
    frames = dicom_dask.open_frames(url)
    FlakyFileSystem.failures = 2
    np.testing.assert_array_equal(frames.array.compute(scheduler="sync"), arr)
    assert FlakyFileSystem.failures == 0


def test_a_persistent_failure_names_the_url_within_its_budget(flaky) -> None:
    url, _ = flaky
    frames = dicom_dask.open_frames(url)
    FlakyFileSystem.error = ServerError(502)
    FlakyFileSystem.failures = 10**6
    FlakyFileSystem.calls = 0
    t0 = time.perf_counter()
    with pytest.raises(ReadError, match=r"after 5 attempts") as info:
        frames.array[2].compute(scheduler="sync")
    assert url.split("://")[1] in str(info.value)
    assert FlakyFileSystem.calls == 5
    assert time.perf_counter() - t0 < 5


def test_permanent_errors_are_not_retried(flaky) -> None:
    url, _ = flaky
    FlakyFileSystem.error = ServerError(403)
    FlakyFileSystem.failures = 1
    with pytest.raises(ReadError, match="HTTP 403") as info:
        dicom_dask.open_frames(url)
    assert "attempts" not in str(info.value)
    assert FlakyFileSystem.calls == 1
    with pytest.raises(SourceNotFoundError):
        dicom_dask.open_frames(url + ".missing")


def test_retry_budget_bounds_the_waits() -> None:
    policy = fetch.RetryPolicy(attempts=10, first_delay=1.0, max_delay=4.0, budget=6.0)
    assert policy.delays() == [1.0, 2.0]
    assert sum(fetch.RetryPolicy().delays()) <= fetch.RetryPolicy().budget
