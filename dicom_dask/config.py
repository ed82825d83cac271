"""dicom_dask's settings: how many threads decode and how many requests are in flight.

The settings live in a [donfig](https://donfig.readthedocs.io) configuration, as zarr's
do: set them for a block with ``dicom_dask.config.set(threads=4)`` (a context manager),
for the process with ``dicom_dask.config.set({"io.concurrency": 64})``, or from the
environment before import with ``DICOM_DASK_THREADS=4`` / ``DICOM_DASK_IO__CONCURRENCY=64``.

Keys
----
``threads``
    Threads that decode frames, read local files and encode written frames, in one
    process (a dask worker counts as one). ``None`` (the default) means zarr's
    ``threading.max_workers`` when that is set, else ``os.cpu_count()``.
``io.concurrency``
    Requests one read keeps in flight on an async filesystem (HTTP, S3, GCS) and on
    DICOMweb. Default 128, the batch fsspec itself gathers; dicom_dask sizes the S3
    connection pool and its DICOMweb sessions to match (s3fs and ``requests`` keep 10
    connections by default). A series of N small files opens in about
    N / ``io.concurrency`` round trips.

Every place that picks a worker count asks [`threads`][dicom_dask.config.threads] or
[`io_concurrency`][dicom_dask.config.io_concurrency]; nothing else reads ``os.cpu_count()``.
"""

from __future__ import annotations

import functools
import os

from donfig import Config

__all__ = ["DEFAULT_IO_CONCURRENCY", "config", "cpu_count", "io_concurrency", "set", "threads"]

#: ``io.concurrency``'s default: the batch fsspec gathers (``fsspec.asyn``'s 128).
DEFAULT_IO_CONCURRENCY = 128

config = Config(
    "dicom_dask",
    defaults=[{"threads": None, "io": {"concurrency": DEFAULT_IO_CONCURRENCY}}],
)

#: ``dicom_dask.config.set(...)``: set keys, for the process or (as a context manager) a block.
set = config.set
get = config.get


@functools.cache
def cpu_count() -> int:
    """``os.cpu_count()``, asked once (each call reads ``/sys``: tens of µs)."""
    return os.cpu_count() or 1


def threads() -> int:
    """The number of threads that decode and encode in this process (at least 1)."""
    value = config.get("threads", None)
    if value is None:
        try:
            import zarr

            value = zarr.config.get("threading.max_workers", None)
        except ImportError:  # pragma: no cover - zarr is a dependency
            value = None
    return max(1, int(value or cpu_count()))


def io_concurrency() -> int:
    """The number of requests one read keeps in flight (at least 1)."""
    return max(1, int(config.get("io.concurrency", DEFAULT_IO_CONCURRENCY)))
