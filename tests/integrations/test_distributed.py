"""Graphs built from ``.array`` compute on a LocalCluster with process workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.testing import write_dicom
from tests.conftest import process_cluster

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with process_cluster() as c:
        yield c


def test_local_cluster_processes(client, tmp_path) -> None:
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 255, (64, 32, 32), dtype=np.uint8)
    path = write_dicom(tmp_path / "rle.dcm", arr, transfer_syntax=uid.RLELossless)
    frames = dicom_dask.open_frames(path)
    graph = frames.array.__dask_graph__()
    # the store (and its manifest) is in the graph once, not once per task
    assert len(pickle.dumps(dict(graph))) < 200_000
    threaded = frames.array.compute(scheduler="threads")
    on_cluster = client.compute(frames.array).result()
    np.testing.assert_array_equal(on_cluster, threaded)
    np.testing.assert_array_equal(on_cluster, arr)
    mean = client.compute(frames.array.mean(axis=(1, 2))).result()
    np.testing.assert_allclose(mean, arr.mean(axis=(1, 2)))


def test_slide_levels_and_ome_zarr_on_cluster(client, tmp_path) -> None:
    from dicom_dask.testing import write_slide

    rng = np.random.default_rng(6)
    matrix = rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)
    path = write_slide(
        tmp_path / "slide.dcm",
        matrix,
        tile=(32, 32),
        transfer_syntax=uid.RLELossless,
        organization="TILED_SPARSE",
        omit=[(2, 3)],
        shuffle=4,
    )
    slide = dicom_dask.open_slide(path, chunk_edge=96, fill_value=9)
    expected = matrix.copy()
    expected[64:96, 96:128] = 9
    level = slide.levels[0]
    assert level.npartitions > 4
    np.testing.assert_array_equal(client.compute(level).result(), expected)
    # the virtual OME-Zarr's store travels to workers too (zarr reads inside tasks)
    import dask.array as da

    ome = da.from_zarr(slide.zarr["0"])
    np.testing.assert_array_equal(client.compute(ome).result(), np.moveaxis(expected, -1, 0))


def test_volume_on_cluster(client, tmp_path) -> None:
    from dicom_dask.testing import write_series

    rng = np.random.default_rng(8)
    vol = rng.integers(0, 4000, (12, 20, 16)).astype(np.uint16)
    write_series(tmp_path, vol, shuffle=1)
    volume = dicom_dask.open_volume(tmp_path, chunk_bytes=4 * 20 * 16 * 2)
    assert volume.array.npartitions == 3
    np.testing.assert_array_equal(client.compute(volume.array).result(), vol[::-1])
    mip = client.compute(volume.array.max(axis=0)).result()
    np.testing.assert_array_equal(mip, vol.max(axis=0))


def test_transformed_graph_on_cluster(client, tmp_path) -> None:
    from dicom_dask.testing import write_series

    vol = np.random.default_rng(21).integers(0, 4000, (6, 16, 16)).astype(np.int16)
    write_series(tmp_path, vol, extra=[{"RescaleIntercept": -1000.0, "RescaleSlope": 2.0}] * 6)
    hu = dicom_dask.open_volume(tmp_path, chunk_bytes=2 * 16 * 16 * 2).transformed()
    got = client.compute(hu.array).result()
    np.testing.assert_allclose(got, vol[::-1] * 2.0 - 1000.0)
