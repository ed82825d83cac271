"""Remote graphs on a LocalCluster with process workers: small graphs, the same results as
the threaded scheduler, a worker killed mid-way, and credentials kept out of pickles."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import time

import numpy as np
import pytest

import dicom_dask
from tests.conftest import process_cluster
from tests.servers import SLIDE_SIZE

distributed = pytest.importorskip("distributed")
SECRET_ID = "AKIADICOMDASKNOTINPICKLES"
SECRET = "dicom-dask-secret-never-pickled"


@pytest.fixture(scope="module")
def client():
    # the workers inherit the credentials from the environment, as on a real cluster
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=SECRET_ID, AWS_SECRET_ACCESS_KEY=SECRET)
    try:
        with process_cluster(threads_per_worker=2) as c:
            yield c
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _checksum(arr):
    """A per-block sum: every pixel counts, the result is small."""
    return arr.astype(np.uint64).sum(axis=(0, 1))


@pytest.mark.slow
def test_full_slide_graph_is_small_and_cluster_equals_threaded(client, proxy) -> None:
    slide = dicom_dask.open_slide(f"{proxy.endpoint}/slide/level0.dcm")
    level = slide.levels[0]
    assert level.shape[:2] == (SLIDE_SIZE, SLIDE_SIZE)
    graph = dict(level.__dask_graph__())
    size = len(pickle.dumps(graph))
    assert size < 1_000_000, size  # the manifest travels once, not once per task
    threaded = _checksum(level).compute(scheduler="threads")
    on_cluster = client.compute(_checksum(level)).result()
    np.testing.assert_array_equal(on_cluster, threaded)
    volume = dicom_dask.open_volume(f"{proxy.endpoint}/series/")
    np.testing.assert_array_equal(
        client.compute(volume.array).result(), volume.array.compute(scheduler="threads")
    )


@pytest.mark.slow
def test_killed_worker_does_not_change_the_result(client, proxy) -> None:
    slide = dicom_dask.open_slide(f"{proxy.endpoint}/slide/level0.dcm")
    expected = _checksum(slide.levels[0]).compute(scheduler="threads")
    proxy.latency = 0.2  # every chunk now waits on the network: the kill lands mid-way
    future = client.compute(_checksum(slide.levels[0]))
    deadline = time.monotonic() + 30
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert not future.done(), "the computation ended before a worker could be killed"
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    np.testing.assert_array_equal(future.result(timeout=120), expected)
    client.wait_for_workers(2, timeout=60)


def test_filesystem_factory_keeps_credentials_out_of_pickles(client, s3_server) -> None:
    s3fs = pytest.importorskip("s3fs")
    server, _ = s3_server
    url = "s3://dicom/slide/level0.dcm"
    # with storage_options the credentials travel in every pickled graph, in plain text
    plain = dicom_dask.open_slide(
        url, storage_options={"endpoint_url": server.endpoint, "key": SECRET_ID, "secret": SECRET}
    )
    assert SECRET.encode() in pickle.dumps(dict(plain.levels[0].__dask_graph__()))
    # a factory is pickled by reference: each worker builds its filesystem and finds the
    # credentials where it runs (here the environment, elsewhere an instance role)
    factory = functools.partial(s3fs.S3FileSystem, endpoint_url=server.endpoint)
    slide = dicom_dask.open_slide(url, storage_options=factory)
    level = slide.levels[0][:2048, :4096]
    blob = pickle.dumps(dict(level.__dask_graph__()))
    assert SECRET.encode() not in blob and SECRET_ID.encode() not in blob
    np.testing.assert_array_equal(
        client.compute(level).result(), plain.levels[0][:2048, :4096].compute()
    )
    volume = dicom_dask.open_volume("s3://dicom/series/", storage_options=factory)
    assert SECRET.encode() not in pickle.dumps(dict(volume.array.__dask_graph__()))
    np.testing.assert_array_equal(
        client.compute(volume.array).result(), volume.array.compute(scheduler="threads")
    )
