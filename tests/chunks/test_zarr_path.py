"""The zarr path: plain zarr reading a DicomStore (and kerchunk references) through the codec.

Every codec pipeline zarr offers reads the same values and fetches only the chunks a
selection touches: zarr's defaults (one chunk a batch, partial decoding by our codec),
``codec_pipeline.batch_size`` > 1 (a batch split among worker threads), dicom_dask's
``DicomCodecPipeline`` (``zarr_settings()``: local frames read, decoded and pasted by
worker threads; anything else as zarr's default), and on zarr >= 3.4 zarr's
``FusedCodecPipeline`` (the store's and codec's synchronous methods). A chunk that
cannot be read raises the chunk's own error under each of them, without hanging.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarr.core.codec_pipeline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import uid

import dicom_dask
from dicom_dask.chunks import pipeline as pipeline_module
from dicom_dask.chunks.manifest import ChunkManifest
from dicom_dask.chunks.pipeline import DicomCodecPipeline
from dicom_dask.chunks.store import DicomStore
from dicom_dask.errors import CorruptFrameError, StaleIndexError
from dicom_dask.testing import write_slide
from tests.conftest import hang_guard
from tests.zarr_own import ZARR_OWN

FUSED = "zarr.core.codec_pipeline.FusedCodecPipeline"
HAS_FUSED = hasattr(zarr.core.codec_pipeline, "FusedCodecPipeline")
PIPELINES: dict[str, dict[str, Any]] = {
    "defaults": {},  # dicom_dask's pipeline: the codec selects it when zarr opens the array
    "zarr-own": ZARR_OWN,
    "zarr-own-batch-5": {**ZARR_OWN, "codec_pipeline.batch_size": 5},
    "zarr_settings": dicom_dask.zarr_settings(),
    "zarr_settings-1-worker": {**dicom_dask.zarr_settings(), "threading.max_workers": 1},
}
if HAS_FUSED:
    PIPELINES["fused"] = {"codec_pipeline.path": FUSED}
    PIPELINES["fused-1-worker"] = {"codec_pipeline.path": FUSED, "codec_pipeline.max_workers": 1}
TILE = 32


def _matrix(rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, size=(rows // 8 + 1, cols // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 8, 0), 8, 1)[:rows, :cols]  # smooth: JPEG keeps it


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("zarr-path") / "slide.dcm"
    return write_slide(path, _matrix(150, 170), tile=(TILE, TILE))


@pytest.fixture(scope="module")
def expected(slide_path: str) -> np.ndarray:
    """Level 0 as the dask array reads it, channel first like the zarr level."""
    pixels = dicom_dask.open_slide(slide_path).levels[0].compute()
    return np.moveaxis(pixels, -1, 0)


def _open_level(slide_path: str, config: dict[str, Any]) -> zarr.Array:
    store = dicom_dask.open_slide(slide_path).store
    with zarr.config.set(config):  # zarr picks the pipeline when it opens the array
        return zarr.open_group(store, mode="r")["0"]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_pipeline_reads_the_same_values(
    slide_path: str, expected: np.ndarray, pipeline: str
) -> None:
    level = _open_level(slide_path, PIPELINES[pipeline])
    if pipeline.startswith("fused"):
        assert type(level._async_array.codec_pipeline).__name__ == "FusedCodecPipeline"
    if pipeline.startswith("zarr_settings") or pipeline == "defaults":
        assert type(level._async_array.codec_pipeline) is DicomCodecPipeline
    if pipeline.startswith("zarr-own"):
        assert type(level._async_array.codec_pipeline).__name__ == "ZarrOwnPipeline"
    np.testing.assert_array_equal(level[...], expected)
    np.testing.assert_array_equal(level[:, 5:131, 7:163], expected[:, 5:131, 7:163])
    np.testing.assert_array_equal(level[1, 33, :], expected[1, 33, :])  # axes dropped
    np.testing.assert_array_equal(level[:, ::7, 3::5], expected[:, ::7, 3::5])
    rows, cols = [0, 40, 149, 41], [169, 2, 64]
    np.testing.assert_array_equal(
        level.oindex[[0, 2], rows, cols], expected[[0, 2]][:, rows][:, :, cols]
    )
    np.testing.assert_array_equal(
        level.vindex[[0, 1, 2], [3, 90, 149], [5, 100, 0]],
        expected[[0, 1, 2], [3, 90, 149], [5, 100, 0]],
    )


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_frames_zarr_under_every_pipeline(slide_path: str, pipeline: str) -> None:
    frames = dicom_dask.open_frames(slide_path)
    with zarr.config.set(PIPELINES[pipeline]):
        array = zarr.open_array(frames.store, mode="r")
    np.testing.assert_array_equal(array[...], frames.array.compute())
    np.testing.assert_array_equal(array[3:9, 4, ::3], frames.array[3:9, 4, ::3].compute())


@pytest.mark.parametrize("pipeline", PIPELINES)
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_selections_fetch_only_touched_tiles(
    slide_path: str,
    expected: np.ndarray,
    pipeline: str,
    data: st.DataObject,
) -> None:
    level = _open_level(slide_path, PIPELINES[pipeline])
    reads: list[int] = []
    read_part = DicomStore._read_part

    def counting(self: DicomStore, ref: Any, start: int, stop: int) -> Any:
        reads.append(ref.offset)
        return read_part(self, ref, start, stop)

    selection = []
    touched = []
    for n in expected.shape[1:]:
        start = data.draw(st.integers(0, n - 1))
        stop = data.draw(st.integers(start + 1, n))
        step = data.draw(st.integers(1, 40))
        selection.append(slice(start, stop, step))
        touched.append({i // TILE for i in range(start, stop, step)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DicomStore, "_read_part", counting)
        got = level[(slice(None), *selection)]
    np.testing.assert_array_equal(got, expected[(slice(None), *selection)])
    assert len(reads) == len(set(reads)) == len(touched[0]) * len(touched[1])


def _truncated_copy(slide_path: str, tmp_path: Any) -> tuple[str, int]:
    copy = str(tmp_path / "cut.dcm")
    shutil.copy(slide_path, copy)
    manifest = dicom_dask.open_tiled(copy).manifest
    last = int(manifest.offsets.max())
    return copy, last


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_an_unreadable_tile_raises_its_own_error(
    slide_path: str, tmp_path: Any, pipeline: str
) -> None:
    copy, last = _truncated_copy(slide_path, tmp_path)
    opened = dicom_dask.open_slide(copy).store
    # a store that knows the version of its files refuses every read of a changed one
    with zarr.config.set(PIPELINES[pipeline]):
        level = zarr.open_group(opened, mode="r")["0"]
    os.truncate(copy, last + 10)  # the last tile is cut short after the slide was opened
    with hang_guard(30), pytest.raises(StaleIndexError, match=r"cut\.dcm: the file changed"):
        level[:, :TILE, :TILE]
    # one that does not (the same manifests and documents) reads what is there: the cut
    # tile fails with its own error, the tiles before it still read
    store = DicomStore(opened.manifests, opened.documents)
    with zarr.config.set(PIPELINES[pipeline]):
        level = zarr.open_group(store, mode="r")["0"]
    with hang_guard(30), pytest.raises(CorruptFrameError, match=r"expected \d+ bytes at offset"):
        level[...]
    assert level[:, :TILE, :TILE].shape == (3, TILE, TILE)


def test_loop_pass_delivers_each_result_and_error() -> None:
    import asyncio

    from dicom_dask.frames.threads import LoopPass, run_in_threads

    passes = LoopPass(run_in_threads)

    def fail() -> int:
        raise ValueError("tile 3")

    async def main() -> list[Any]:
        futures = [passes.submit(lambda i=i: i * i) for i in range(7)]
        futures.append(passes.submit(fail))
        return await asyncio.gather(*futures, return_exceptions=True)

    out = asyncio.run(main())
    assert out[:7] == [i * i for i in range(7)]
    assert isinstance(out[7], ValueError) and "tile 3" in str(out[7])


def test_sync_io_only_for_local_and_inline_chunks(tmp_path: Any, slide_path: str) -> None:
    local = dicom_dask.open_slide(slide_path).store
    assert local.local_only
    grid = np.zeros((1, 1), dtype=np.int32)
    one = np.ones((1, 1), dtype=np.uint64)
    remote = DicomStore({"": ChunkManifest(["s3://bucket/slide.dcm"], grid, one, one)})
    assert not remote.local_only
    http = DicomStore({"": ChunkManifest(["https://host/slide.dcm"], grid, one, one)})
    assert not http.local_only
    assert DicomStore({}).local_only  # documents and in-memory keys only


def test_zarr_settings_select_the_registered_pipeline() -> None:
    from importlib.metadata import entry_points

    from zarr.registry import get_pipeline_class

    settings_ = dicom_dask.zarr_settings()
    assert settings_ == {"codec_pipeline.path": "dicom_dask.chunks.pipeline.DicomCodecPipeline"}
    with zarr.config.set(settings_):
        assert get_pipeline_class() is DicomCodecPipeline
    points = entry_points(group="zarr.codec_pipeline")
    if any(p.value.startswith("dicom_dask.") for p in points):  # installed, not a bare checkout
        assert [p.load() for p in points if p.value.startswith("dicom_dask.")] == [
            DicomCodecPipeline
        ]


def test_frames_and_volume_zarr_open_with_the_pipeline_unless_another_is_set(
    slide_path: str,
) -> None:
    frames = dicom_dask.open_frames(slide_path)
    assert type(frames.zarr._async_array.codec_pipeline) is DicomCodecPipeline
    with zarr.config.set({"codec_pipeline.batch_size": 3}):  # a setting, not a pipeline
        assert type(dicom_dask.open_frames(slide_path).zarr._async_array.codec_pipeline) is (
            DicomCodecPipeline
        )
    if HAS_FUSED:  # the user's own choice of pipeline is kept
        with zarr.config.set({"codec_pipeline.path": FUSED}):
            array = dicom_dask.open_frames(slide_path).zarr
        assert type(array._async_array.codec_pipeline).__name__ == "FusedCodecPipeline"
    with zarr.config.set(ZARR_OWN):
        array = dicom_dask.open_frames(slide_path).zarr
    assert type(array._async_array.codec_pipeline).__name__ == "ZarrOwnPipeline"
    assert zarr.config.get("codec_pipeline.path") == pipeline_module.PIPELINE_PATH


def test_pipeline_keeps_zarrs_default_for_other_arrays(tmp_path: Any) -> None:
    """Under ``zarr_settings()`` arrays of other codecs (written and read back) and
    remote-looking stores use zarr's default pipeline unchanged."""
    values = np.arange(60 * 70, dtype=np.uint16).reshape(60, 70)
    with zarr.config.set(dicom_dask.zarr_settings()):
        array = zarr.create_array(
            tmp_path / "plain.zarr", shape=values.shape, chunks=(16, 16), dtype=values.dtype
        )
        array[...] = values
        array[3:9, 5] = 7
        again = zarr.open_array(tmp_path / "plain.zarr", mode="r")
    values[3:9, 5] = 7
    assert type(again._async_array.codec_pipeline) is DicomCodecPipeline
    np.testing.assert_array_equal(again[...], values)
    np.testing.assert_array_equal(again[10:50:3, 60:], values[10:50:3, 60:])


def test_pipeline_fills_missing_tiles_of_a_sparse_slide(tmp_path: Any) -> None:
    """Tiles a TILED_SPARSE instance does not have read as the fill value in worker
    threads, as under zarr's default pipeline."""
    from dicom_dask.testing import write_slide

    pixels = _matrix(96, 96)
    path = write_slide(
        tmp_path / "sparse.dcm",
        pixels,
        tile=(TILE, TILE),
        organization="TILED_SPARSE",
        omit=[(1, 1)],
        shuffle=4,
    )
    store = dicom_dask.open_slide(path).store
    got = {}
    for name in ("zarr-own", "zarr_settings"):
        with zarr.config.set(PIPELINES[name]):
            got[name] = zarr.open_group(store, mode="r")["0"][...]
    np.testing.assert_array_equal(got["zarr_settings"], got["zarr-own"])
    assert (got["zarr_settings"][:, TILE : 2 * TILE, TILE : 2 * TILE] == 0).all()
    dask_level = dicom_dask.open_slide(path).levels[0].compute()
    np.testing.assert_array_equal(got["zarr_settings"], np.moveaxis(dask_level, -1, 0))


@pytest.mark.parametrize("direct", [True, False], ids=["pread", "fsspec"])
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_kerchunk_references_under_the_pipelines(
    slide_path: str,
    expected: np.ndarray,
    pipeline: str,
    direct: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fsspec

    import dicom_dask.chunks.codec as codec

    refs = dicom_dask.to_kerchunk(slide_path, kind="slide")
    if not direct:  # references to a filesystem other than the local disk: fetched, in parts
        memory = fsspec.filesystem("memory")
        memory.pipe("/kerchunk-slide.dcm", Path(slide_path).read_bytes())
        for key, value in refs["refs"].items():
            if isinstance(value, list):
                refs["refs"][key] = ["memory://kerchunk-slide.dcm", *value[1:]]
        monkeypatch.setattr(pipeline_module, "REMOTE_WAVE", 9)  # waves of 9 chunks
    monkeypatch.setattr(codec, "FETCH_PART", 7)  # a batch's bytes come in several parts
    with zarr.config.set(PIPELINES[pipeline]):
        level = _kerchunk_level(refs)
    waves: list[int] = []
    read_batch = DicomCodecPipeline.read_batch

    async def counting(self: Any, batch: Any, *args: Any) -> Any:
        waves.append(len(batch))
        return await read_batch(self, batch, *args)

    monkeypatch.setattr(DicomCodecPipeline, "read_batch", counting)
    np.testing.assert_array_equal(level[...], expected)
    if not direct and (pipeline.startswith("zarr_settings") or pipeline == "defaults"):
        assert waves == [9, 9, 9, 3]  # the 30 tiles, in waves
    np.testing.assert_array_equal(level[:, 40:100, 1:2], expected[:, 40:100, 1:2])
    if not direct:
        fsspec.filesystem("memory").rm("/kerchunk-slide.dcm")


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize(
    ("syntax", "planar"),
    [
        (uid.ExplicitVRLittleEndian, 0),  # zarr's own bytes codec, through get_sync
        (uid.ExplicitVRLittleEndian, 1),  # planar RGB: our codec reorders the samples
        (uid.DeflatedExplicitVRLittleEndian, 0),  # carried inline in the manifest
        (uid.RLELossless, 0),
        (uid.JPEG2000Lossless, 0),
    ],
)
def test_other_syntaxes_under_every_pipeline(
    tmp_path: Any, pipeline: str, syntax: str, planar: int
) -> None:
    from dicom_dask.testing import write_dicom

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, size=(5, 64, 48, 3), dtype=np.uint8)
    path = write_dicom(
        tmp_path / "f.dcm", pixels, transfer_syntax=syntax, planar_configuration=planar
    )
    frames = dicom_dask.open_frames(path)
    with zarr.config.set(PIPELINES[pipeline]):
        array = zarr.open_array(frames.store, mode="r")
    np.testing.assert_array_equal(array[...], pixels)
    np.testing.assert_array_equal(array[1:4, ::5, 3, 1:], pixels[1:4, ::5, 3, 1:])


def _kerchunk_level(refs: dict[str, Any]) -> zarr.Array:
    import fsspec

    fs = fsspec.filesystem("reference", fo=refs, asynchronous=True)
    return zarr.open_group(zarr.storage.FsspecStore(fs, read_only=True, path=""), mode="r")["0"]


@pytest.mark.parametrize("pipeline", ["zarr-own", "zarr_settings"])
def test_kerchunk_local_ranges_are_read_directly_and_checked(
    slide_path: str,
    expected: np.ndarray,
    tmp_path: Any,
    pipeline: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """References to byte ranges of a local file are read with ``pread`` in the decoding
    thread (as fsspec would read them), one per touched tile; a file cut short after the
    references were written gives the chunk's error, not garbage."""
    copy, last = _truncated_copy(slide_path, tmp_path)
    refs = dicom_dask.to_kerchunk(copy, kind="slide")
    with zarr.config.set(PIPELINES[pipeline]):
        level = _kerchunk_level(refs)
    reads: list[int] = []
    pread = os.pread

    def counting(fd: int, length: int, offset: int) -> bytes:
        reads.append(offset)
        return pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", counting)  # the system calls, counted
    np.testing.assert_array_equal(level[:, 40:70, 60:100], expected[:, 40:70, 60:100])
    assert len(reads) == len(set(reads)) == 2 * 3  # tile rows 1-2, tile columns 1-3
    os.truncate(copy, last + 10)
    with hang_guard(30), pytest.raises(CorruptFrameError, match=r"expected \d+ bytes at offset"):
        level[...]


def test_kerchunk_other_references_go_through_fsspec(slide_path: str, expected: np.ndarray) -> None:
    """An inline chunk (read by fsspec) and a ``file://`` URL (read directly) among the
    references give the same pixels."""
    import base64

    refs = dicom_dask.to_kerchunk(slide_path, kind="slide")
    chunk_keys = sorted(k for k, v in refs["refs"].items() if isinstance(v, list))
    url, offset, length = refs["refs"][chunk_keys[0]]
    with open(url, "rb") as f:
        f.seek(offset)
        refs["refs"][chunk_keys[0]] = "base64:" + base64.b64encode(f.read(length)).decode()
    url, offset, length = refs["refs"][chunk_keys[1]]
    refs["refs"][chunk_keys[1]] = ["file://" + url, offset, length]
    for pipeline in ("zarr-own", "zarr_settings"):
        with zarr.config.set(PIPELINES[pipeline]):
            level = _kerchunk_level(refs)
        np.testing.assert_array_equal(level[...], expected)


def test_pipeline_threads_stop_at_the_first_error_before_it_is_raised() -> None:
    """One chunk's error stops the other workers after their current chunk, and the
    read raises only once every worker has stopped (nothing writes into the output
    afterwards)."""
    import asyncio
    import threading
    import time

    from dicom_dask.frames.threads import map_in_threads

    done: list[int] = []
    lock = threading.Lock()

    def func(k: int) -> int:
        if k == 3:
            raise CorruptFrameError("chunk 3: expected 100 bytes at offset 9, got 7")
        time.sleep(0.01)
        with lock:
            done.append(k)
        return k

    with hang_guard(30), pytest.raises(CorruptFrameError, match="chunk 3"):
        asyncio.run(map_in_threads(func, 200, 3))
    finished = len(done)
    time.sleep(0.05)
    assert len(done) == finished < 20  # stopped early, and nothing ran after the raise
    assert asyncio.run(map_in_threads(lambda k: k * k, 50, 4)) == [k * k for k in range(50)]
    assert asyncio.run(map_in_threads(lambda k: k, 0, 4)) == []


_DEFAULT_READERS = r"""
import json, sys
import numpy as np, xarray as xr, zarr
import dicom_dask
from dicom_dask.frames import threads

assert zarr.config.get("codec_pipeline.path").endswith(".BatchedCodecPipeline")
threaded = []  # reads whose chunks dicom_dask's pipeline read, decoded and pasted in threads
in_threads = threads.map_in_threads

async def counting(func, n, workers):
    threaded.append(n)
    return await in_threads(func, n, workers)

threads.map_in_threads = counting
slide = dicom_dask.open_slide(sys.argv[1])
expected = np.moveaxis(slide.levels[0].compute(), -1, 0)
got = {}
level = slide.zarr["0"]
got["slide.zarr"] = (type(level._async_array.codec_pipeline).__name__, level[...])
level = zarr.open_group(slide.store, mode="r")["0"]
got["open_group"] = (type(level._async_array.codec_pipeline).__name__, level[...])
ds = xr.open_zarr(slide.store, consolidated=False, chunks=None)
got["xarray.open_zarr"] = ("?", ds["0"].values)
refs = dicom_dask.to_kerchunk(sys.argv[1], kind="slide")
ds = xr.open_dataset(
    "reference://", engine="zarr", chunks=None, consolidated=False,
    backend_kwargs={"storage_options": {"fo": refs}},
)
got["xarray kerchunk"] = ("?", ds["0"].values)
out = {k: [name, bool(np.array_equal(v, expected))] for k, (name, v) in got.items()}
print(json.dumps({"read": out, "threaded": threaded,
                  "config": zarr.config.get("codec_pipeline.path")}))
"""


def test_readers_of_the_slide_store_use_the_pipeline_by_default(slide_path: str) -> None:
    """Without any setting (a fresh process), ``slide.zarr``, ``zarr.open_group(store)``,
    ``xarray.open_zarr(store)`` and xarray over kerchunk references read through
    dicom_dask's pipeline: each read's
    tiles are read, decoded and pasted by its threads (one call per read, not zarr's one
    batch per chunk), and give the dask array's pixels."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _DEFAULT_READERS, slide_path],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    tiles = 5 * 6  # 150 x 170 in tiles of 32
    assert result["read"] == {
        "slide.zarr": ["DicomCodecPipeline", True],
        "open_group": ["DicomCodecPipeline", True],
        "xarray.open_zarr": ["?", True],
        "xarray kerchunk": ["?", True],
    }
    assert result["threaded"] == [tiles] * 4
    assert result["config"] == pipeline_module.PIPELINE_PATH
