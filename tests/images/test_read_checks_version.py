"""Reads check that a file is still the version it was indexed from (issue 31).

A series is indexed (opened, or catalogued and re-opened with ``open_entry``, which sends
no request), then one of its files is rewritten. Reading the pixels of that file raises
``StaleIndexError`` naming it, through dask and through zarr, over the local disk, nginx,
S3 (moto) and GCS (the emulator); the other files still read. The check costs no request:
every ranged GET's reply carries the object's size and ETag or generation, and a local
read ``fstat``s the descriptor it reads through.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dicom_dask
from dicom_dask.errors import StaleIndexError
from dicom_dask.testing import loopback, write_series
from tests.servers import Backend

SLICES = 3


def _write(folder: Path) -> np.ndarray:
    """A 3-file series ``s0000.dcm``...; returns its pixels as the local open reads them."""
    volume = np.arange(SLICES * 16 * 12, dtype=np.uint16).reshape(SLICES, 16, 12)
    write_series(folder, volume, shuffle=0, prefix="s")
    return np.asarray(dicom_dask.open_volume(folder).array.compute())


@pytest.fixture
def served(
    backend: Backend, data_tree: Path, tmp_path: Path
) -> tuple[str, dict[str, Any], Callable[[str, bytes], None], np.ndarray]:
    """A fresh 3-file series where ``backend`` serves it: its folder URL, the storage
    options, a function that rewrites one of its files, and its pixels."""
    name = f"stale-{uuid.uuid4().hex[:8]}"
    if backend.name in ("local", "http"):
        folder = (tmp_path if backend.name == "local" else data_tree) / name
        volume = _write(folder)

        def rewrite(file: str, data: bytes) -> None:
            path = folder / file
            before = path.stat().st_mtime
            path.write_bytes(data)
            os.utime(path, (before + 10, before + 10))  # nginx's ETag counts whole seconds

        url = str(folder) if backend.name == "local" else backend.url(name) + "/"
        return url, backend.storage_options, rewrite, volume
    import fsspec

    local = tmp_path / name
    volume = _write(local)
    fs = fsspec.filesystem(backend.name, **backend.storage_options, skip_instance_cache=True)
    root = f"{backend.prefix.split('://')[1]}/{name}"
    fs.put(f"{local}/", f"{root}/", recursive=True)

    def rewrite_object(file: str, data: bytes) -> None:
        fs.pipe_file(f"{root}/{file}", data)

    return backend.url(name) + "/", backend.storage_options, rewrite_object, volume


def _same_size_other_pixels(data: bytes) -> bytes:
    """The file with its last pixels inverted (native pixel data end the file)."""
    return data[:-8] + bytes(255 - b for b in data[-8:])


def test_reading_a_rewritten_file_raises_stale_index(served) -> None:
    url, options, rewrite, volume = served
    opened = dicom_dask.open_volume(url, storage_options=options)
    np.testing.assert_array_equal(opened.array.compute(), volume)
    name = "s0001.dcm"
    data = _read_whole(f"{url.rstrip('/')}/{name}", options)
    if url.startswith("gs://"):
        # the GCS emulator sends no x-goog-generation with a download (GCS does): over it
        # only a change of size shows in the reply
        rewrite(name, data + b"\0\0")
    else:
        rewrite(name, _same_size_other_pixels(data))  # the ETag or mtime tells
    with pytest.raises(StaleIndexError, match=rf"{name}: the file changed since it was indexed"):
        opened.array.compute()
    with pytest.raises(StaleIndexError, match=name):
        opened.zarr[:]
    # one slice is that file's and fails; the others are still the versions indexed
    failed = 0
    for k in range(SLICES):
        try:
            np.testing.assert_array_equal(opened.array[k].compute(), volume[k])
        except StaleIndexError:
            failed += 1
    assert failed == 1


def test_a_catalog_row_checks_what_it_reads(served) -> None:
    """``open_entry`` sends no request; the identity the catalog recorded (from the
    listing: size, ETag, generation, time) is checked by the reads. The untouched row
    reads (a listing's time and a reply's differ in precision: not a change), a file
    rewritten with the same size is caught by its ETag (S3, nginx) or time (local), one
    grown by two bytes by its size."""
    pytest.importorskip("pandas")
    url, options, rewrite, volume = served
    df = dicom_dask.catalog(url, storage_options=options)
    (row,) = [df.iloc[i] for i in range(len(df))]
    opened = dicom_dask.open_entry(row, storage_options=options)
    np.testing.assert_array_equal(opened.array.compute(), volume)
    data = {n: _read_whole(f"{url.rstrip('/')}/{n}", options) for n in ("s0000.dcm", "s0002.dcm")}
    if not url.startswith("gs://"):  # the GCS emulator's downloads carry no generation
        rewrite("s0000.dcm", _same_size_other_pixels(data["s0000.dcm"]))
        with pytest.raises(StaleIndexError, match=r"s0000\.dcm: .*(etag|mtime)"):
            dicom_dask.open_entry(row, storage_options=options).array.compute()
        rewrite("s0000.dcm", data["s0000.dcm"] + b"\0\0")
    rewrite("s0002.dcm", data["s0002.dcm"] + b"\0\0")
    reopened = dicom_dask.open_entry(row, storage_options=options)
    with pytest.raises(StaleIndexError, match=r"s0\d{3}\.dcm: .*size"):
        reopened.array.compute()


def _read_whole(url: str, options: dict[str, Any]) -> bytes:
    import fsspec

    with fsspec.open(url, "rb", **options) as f:
        return f.read()


def test_the_check_costs_no_request(http_server, data_tree) -> None:
    """Reading through the counting proxy: one GET per file, as without the check."""
    name = f"stale-{uuid.uuid4().hex[:8]}"
    volume = _write(data_tree / name)
    with loopback.Proxy(http_server.endpoint) as proxy:
        opened = dicom_dask.open_volume(f"{proxy.endpoint}/{name}/")
        proxy.reset()
        np.testing.assert_array_equal(opened.array.compute(), volume)
        log = proxy.reset()
    assert len(log) == SLICES and all(r.method == "GET" and r.range for r in log)
