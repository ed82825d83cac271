"""Remote reads on real servers on 127.0.0.1: nginx (HTTP ranges), moto (S3), a GCS emulator.

Every opener gives the same arrays over ``http://``, ``s3://``, ``gs://`` as from local
paths; a counting proxy in front of nginx checks the request plan; the proxy's latency and
fault injection check round trips, concurrency and retries.
"""

from __future__ import annotations

import numpy as np
import pytest

import dicom_dask
import dicom_dask.config
from dicom_dask.errors import DicomDaskError, ReadError, SourceNotFoundError
from dicom_dask.frames import fetch
from dicom_dask.testing import loopback
from tests.conftest import REAL, REFERENCE
from tests.servers import SLIDE_SIZE, SLIDE_TILE
from tests.zarr_own import ZARR_OWN

REAL_PATHS = sorted(f["path"] for f in REFERENCE["files"])
REAL_SERIES = sorted(s["folder"] for s in REFERENCE["series"])
REGION = ((1000, 1500), (2048, 2048))  # (x, y), (width, height): unaligned


def _local_frames(path: str) -> np.ndarray | None:
    try:
        return dicom_dask.open_frames(REAL / path).array.compute()
    except DicomDaskError:
        return None


# -- identical arrays on every backend ----------------------------------------------
@pytest.mark.skipif(not REAL_PATHS, reason="../shared/data/real is absent")
def test_real_files_identical(backend) -> None:
    compared = 0
    for path in REAL_PATHS:
        expected = _local_frames(path)
        if expected is None:  # a file we refuse locally is refused remotely too
            with pytest.raises(DicomDaskError):
                dicom_dask.open_frames(
                    backend.url(f"real/{path}"), storage_options=backend.storage_options
                ).array.compute()
            continue
        frames = dicom_dask.open_frames(
            backend.url(f"real/{path}"), storage_options=backend.storage_options
        )
        np.testing.assert_array_equal(frames.array.compute(), expected, err_msg=path)
        compared += 1
    assert compared >= 100


def test_slide_identical(backend, data_tree) -> None:
    local = dicom_dask.open_slide(data_tree / "slide")
    remote = dicom_dask.open_slide(backend.url("slide/"), storage_options=backend.storage_options)
    assert remote.dimensions == local.dimensions == [(SLIDE_SIZE, SLIDE_SIZE)]
    (x, y), (w, h) = REGION
    expected = local.read_region((x, y), 0, (w, h))
    np.testing.assert_array_equal(remote.read_region((x, y), 0, (w, h)), expected)
    np.testing.assert_array_equal(remote.levels[0][y : y + h, x : x + w].compute(), expected)
    np.testing.assert_allclose(remote.pyramid[0].affine, local.pyramid[0].affine)


@pytest.mark.skipif(not REAL_PATHS, reason="../shared/data/real is absent")
def test_real_slides_identical(backend) -> None:
    for name in (
        "wsi/cmu1_napari",
        "wsi/highdicom_sm_image.dcm",
        "wsi/ezwsi_camelyon_multiframe.dcm",
    ):
        local = dicom_dask.open_slide(REAL / name)
        remote = dicom_dask.open_slide(
            backend.url(f"real/{name}" + ("" if name.endswith(".dcm") else "/")),
            storage_options=backend.storage_options,
        )
        assert remote.dimensions == local.dimensions
        for a, b in zip(remote.levels, local.levels, strict=True):
            np.testing.assert_array_equal(a.compute(), b.compute(), err_msg=name)


def test_volumes_identical(backend, data_tree) -> None:
    folders = [("series", data_tree / "series")] + [
        (f"real/{f}", REAL / f) for f in REAL_SERIES if "ct_" in f
    ]
    for relative, local_path in folders:
        local = dicom_dask.open_volume(local_path)
        remote = dicom_dask.open_volume(
            backend.url(relative + "/"), storage_options=backend.storage_options
        )
        np.testing.assert_array_equal(remote.array.compute(), local.array.compute())
        np.testing.assert_allclose(remote.affine, local.affine, atol=1e-9)


# -- the request plan, counted by a proxy ---------------------------------------------
def _touched_bytes(slide: dicom_dask.Slide) -> tuple[int, int]:
    """Encoded bytes and tile rows of the tiles under REGION."""
    (x, y), (w, h) = REGION
    manifest = next(iter(slide.store.manifests.values()))
    rows = range(y // SLIDE_TILE, (y + h - 1) // SLIDE_TILE + 1)
    cols = range(x // SLIDE_TILE, (x + w - 1) // SLIDE_TILE + 1)
    lead = (0,) * (len(manifest.grid_shape) - 2)
    total = sum(manifest.get((*lead, r, c)).length for r in rows for c in cols)
    return total, len(rows)


def test_open_and_region_request_counts(proxy, http_server) -> None:
    url = f"{proxy.endpoint}/slide/level0.dcm"
    slide = dicom_dask.open_slide(url)
    opened = proxy.reset()
    # the header block (its Content-Range tells the size: no HEAD), the tail of the
    # pixel data
    assert len(opened) <= 2 and all(r.method == "GET" for r in opened), opened
    assert all(r.range for r in opened if r.method == "GET"), opened
    (x, y), (w, h) = REGION
    region = slide.read_region((x, y), 0, (w, h))
    log = proxy.reset()
    encoded, tile_rows = _touched_bytes(slide)
    assert len(log) <= tile_rows, [r.range for r in log]
    assert sum(r.body_bytes for r in log) < 1.2 * encoded
    # the server's own log agrees with the proxy's
    with open(f"{http_server.workdir}/access.log") as f:
        access = f.read()
    for entry in log:
        assert f'"{entry.range}" 206' in access
    np.testing.assert_array_equal(region, dicom_dask.open_slide(url).read_region((x, y), 0, (w, h)))


def test_region_sliced_from_the_dask_array_request_counts(proxy) -> None:
    """A 2048² region sliced from ``levels[0]`` costs what ``read_region`` costs: at most
    one request per tile row and < 1.2x the touched tiles' bytes (``compute()``); through
    the dask graph (the threaded scheduler), every task reads only its touched tiles."""
    import dask.array as da

    url = f"{proxy.endpoint}/slide/level0.dcm"
    slide = dicom_dask.open_slide(url)
    proxy.reset()
    (x, y), (w, h) = REGION
    region = slide.levels[0][y : y + h, x : x + w]
    pixels = region.compute()
    log = proxy.reset()
    encoded, tile_rows = _touched_bytes(slide)
    assert len(log) <= tile_rows, [r.range for r in log]
    assert sum(r.body_bytes for r in log) < 1.2 * encoded
    np.testing.assert_array_equal(pixels, slide.read_region((x, y), 0, (w, h)))
    proxy.reset()
    graph = da.Array.compute(region, scheduler="threads", num_workers=2)
    log = proxy.reset()
    blocks = len(region.chunks[1])  # a tile row split between dask blocks: one request each
    assert len(log) <= tile_rows * blocks, [r.range for r in log]
    assert sum(r.body_bytes for r in log) < 1.2 * encoded
    np.testing.assert_array_equal(graph, pixels)
    mean = float(region.mean().compute(scheduler="threads"))
    log = proxy.reset()
    assert sum(r.body_bytes for r in log) < 1.2 * encoded
    assert np.isclose(mean, pixels.mean())


def test_latency_round_trips_and_concurrency(proxy, monkeypatch) -> None:
    proxy.latency = 0.05
    url = f"{proxy.endpoint}/slide/level0.dcm"
    (x, y), (w, h) = REGION
    dicom_dask.open_slide(url).read_region((x, y), 0, (w, h))
    log = proxy.reset()
    waves = "; ".join(f"{r.method} {r.range} {r.start:.3f}-{r.stop:.3f}" for r in log)
    assert loopback.round_trips(log) <= 5, waves
    # the region's tile rows were in flight together
    slide = dicom_dask.open_slide(url)
    proxy.reset()
    slide.read_region((x, y), 0, (w, h))
    assert proxy.max_in_flight >= 8
    with dicom_dask.config.set({"io.concurrency": 1}):
        proxy.reset()
        slide.read_region((x, y), 0, (w, h))
    assert proxy.max_in_flight == 1


def test_header_requests_are_bounded(proxy) -> None:
    """Opening a file costs a few requests whatever its size; a series costs its files'."""
    names = ["slide/level0.dcm"] + (["real/wsi/highdicom_sm_image.dcm"] if REAL.exists() else [])
    for name in names:
        proxy.reset()
        dicom_dask.open_frames(f"{proxy.endpoint}/{name}")
        log = proxy.reset()
        assert len(log) <= 4, log
        assert sum(r.body_bytes for r in log) < 512 * 1024


# -- faults ---------------------------------------------------------------------------------
def test_transient_faults_leave_results_identical(proxy, data_tree) -> None:
    expected_slide = dicom_dask.open_slide(data_tree / "slide").read_region(
        *REGION[:1], 0, REGION[1]
    )
    expected_volume = dicom_dask.open_volume(data_tree / "series").array.compute()
    proxy.fail_rate = 0.1
    slide = dicom_dask.open_slide(f"{proxy.endpoint}/slide/level0.dcm")
    np.testing.assert_array_equal(slide.read_region(REGION[0], 0, REGION[1]), expected_slide)
    levels = slide.levels[0][:2048, :4096].compute()
    np.testing.assert_array_equal(
        levels, dicom_dask.open_slide(data_tree / "slide").levels[0][:2048, :4096].compute()
    )
    volume = dicom_dask.open_volume(f"{proxy.endpoint}/series/")
    np.testing.assert_array_equal(volume.array.compute(), expected_volume)
    failed = [r for r in proxy.log if r.status == 503]
    assert len(failed) >= 3, "the proxy injected too few faults to test anything"


def test_permanent_errors_name_the_url(proxy) -> None:
    missing = f"{proxy.endpoint}/slide/missing.dcm"
    with pytest.raises(SourceNotFoundError, match=r"missing\.dcm"):
        dicom_dask.open_frames(missing)
    url = f"{proxy.endpoint}/slide/level0.dcm"
    slide = dicom_dask.open_slide(url)
    proxy.deny = {"/slide/": 403}
    proxy.reset()
    with pytest.raises(ReadError, match=r"level0\.dcm.*403.*needed for tile"):
        slide.read_region((0, 0), 0, (256, 256))
    assert len(proxy.reset()) == 2, "a permanent error was retried"  # 2 tile rows
    with pytest.raises(ReadError, match=r"level0\.dcm"):
        dicom_dask.open_frames(url)


def test_retries_give_up_within_budget(proxy, monkeypatch) -> None:
    monkeypatch.setattr(fetch, "RETRY", fetch.RetryPolicy(attempts=3, first_delay=0.01))
    slide = dicom_dask.open_slide(f"{proxy.endpoint}/slide/level0.dcm")
    proxy.fail_rate = 1.0
    proxy.reset()
    with pytest.raises(ReadError, match="after 3 attempts"):
        slide.read_region((0, 0), 0, (128, 128))
    assert len(proxy.log) == 3


# -- caching -----------------------------------------------------------------------------
def test_simplecache_and_blockcache(proxy, data_tree, tmp_path) -> None:
    path = "slide/level0.dcm"
    expected = dicom_dask.open_frames(data_tree / path).array[::97].compute()
    for chain in ("simplecache", "blockcache"):
        options = {chain: {"cache_storage": str(tmp_path / chain)}}
        url = f"{chain}::{proxy.endpoint}/{path}"
        frames = dicom_dask.open_frames(url, storage_options=options)
        np.testing.assert_array_equal(frames.array[::97].compute(), expected)
        proxy.reset()
        np.testing.assert_array_equal(frames.array[::97].compute(), expected)
        assert proxy.reset() == [], f"{chain}: the second read went to the server"


# -- index sidecars ---------------------------------------------------------------------
def test_series_and_slide_index_reopen_without_requests(proxy, tmp_path) -> None:
    volume = dicom_dask.open_volume(f"{proxy.endpoint}/series/")
    slide = dicom_dask.open_slide(f"{proxy.endpoint}/slide/level0.dcm")
    volume.save_index(tmp_path / "series.json")
    slide.save_index(tmp_path / "slide.json")
    assert dicom_dask.list_series(index=tmp_path / "series.json")[0]["frames"] == 24
    proxy.reset()
    again = dicom_dask.open_volume(index=tmp_path / "series.json")
    slide_again = dicom_dask.open_slide(index=tmp_path / "slide.json")
    log = proxy.reset()  # the binding check: one HEAD per file, no byte read
    assert {r.method for r in log} == {"HEAD"}, "reopening from an index read the files"
    assert len(log) == len(volume.to_index()["dicom_dask_series"]["files"]) + 1
    dicom_dask.open_volume(index=tmp_path / "series.json", verify=False)
    dicom_dask.open_slide(index=tmp_path / "slide.json", verify=False)
    assert proxy.reset() == [], "reopening unverified from an index sent requests"
    np.testing.assert_array_equal(again.array.compute(), volume.array.compute())
    np.testing.assert_allclose(again.affine, volume.affine)
    region = slide_again.read_region(REGION[0], 0, REGION[1])
    np.testing.assert_array_equal(region, slide.read_region(REGION[0], 0, REGION[1]))


@pytest.mark.parametrize("settings", ["zarr-own", "zarr_settings"])
def test_zarr_path_region_request_counts(proxy, settings) -> None:
    """Plain zarr slicing a remote slide's OME-Zarr level fetches only the touched tiles;
    with ``zarr_settings()`` (dicom_dask's pipeline hands the codec every remote chunk at
    once) they come in at most one request per tile row."""
    import zarr

    url = f"{proxy.endpoint}/slide/level0.dcm"
    slide = dicom_dask.open_slide(url)
    config = dicom_dask.zarr_settings() if settings == "zarr_settings" else ZARR_OWN
    with zarr.config.set(config):
        level = zarr.open_group(slide.store, mode="r")["0"]
    proxy.reset()
    (x, y), (w, h) = REGION
    pixels = level[:, y : y + h, x : x + w]
    log = proxy.reset()
    encoded, tile_rows = _touched_bytes(slide)
    assert sum(r.body_bytes for r in log) < 1.2 * encoded
    if settings == "zarr_settings":
        assert len(log) <= tile_rows, [r.range for r in log]
    np.testing.assert_array_equal(np.moveaxis(pixels, 0, -1), slide.read_region((x, y), 0, (w, h)))
