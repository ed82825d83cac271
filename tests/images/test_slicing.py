"""Slicing the dask arrays reads exactly the frames and tiles a selection touches.

Random selections (integers, slices with any step, negative steps, one integer list,
``Ellipsis``) on frames, a slide level, a multi-channel level, a volume and
transformed levels: the values equal NumPy indexing of the materialised array
(``dask.array.utils.assert_eq``), and a counting reader shows that the chunks fetched,
through the dask graph and through ``compute()``'s direct read, are exactly the
chunks holding selected elements.
"""

from __future__ import annotations

import collections
import itertools
import pickle
from dataclasses import replace
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
from dask.array.utils import assert_eq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import uid

import dicom_dask
from dicom_dask.chunks.reader import ManifestArray
from dicom_dask.images.lazy import ReaderArray
from dicom_dask.testing import write_dicom, write_series, write_slide

RNG = np.random.default_rng(7)


class Counter:
    """Records the chunk coordinates every ManifestArray reads (fetched or read directly)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.coords: list[tuple[int, ...]] = []
        fetch, direct = ManifestArray._fetch, ManifestArray._read_direct
        counter = self

        def counting_fetch(self: ManifestArray, wanted: Any) -> list[bytes]:
            counter.coords.extend(item[0] for item in wanted)
            return fetch(self, wanted)

        def counting_direct(self: ManifestArray, batch: Any, out: Any) -> Any:
            rest = direct(self, batch, out)
            kept = {id(item) for item in rest}
            counter.coords.extend(item[0] for item in batch if id(item) not in kept)
            return rest

        monkeypatch.setattr(ManifestArray, "_fetch", counting_fetch)
        monkeypatch.setattr(ManifestArray, "_read_direct", counting_direct)

    def take(self) -> list[tuple[int, ...]]:
        out, self.coords = self.coords, []
        return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Any]:
    """Small images with several chunks per dask block (and several blocks)."""
    tmp = tmp_path_factory.mktemp("slicing")
    rgb = RNG.integers(0, 255, (70, 90, 3)).astype(np.uint8)
    write_slide(tmp / "rgb.dcm", rgb, tile=(16, 16), transfer_syntax=uid.RLELossless)
    multi = RNG.integers(0, 255, (2, 2, 40, 50)).astype(np.uint8)
    write_slide(
        tmp / "multi.dcm",
        multi,
        tile=(16, 16),
        transfer_syntax=uid.RLELossless,
        optical_paths=["A", "B"],
        focal_planes=[0.0, 1.0],
    )
    planes = RNG.integers(0, 255, (1, 3, 40, 50)).astype(np.uint8)
    write_slide(
        tmp / "planes.dcm",
        planes,
        tile=(16, 16),
        transfer_syntax=uid.RLELossless,
        focal_planes=[0.0, 1.0, 2.0],
    )
    frames = RNG.integers(0, 4000, (9, 12, 10)).astype(np.uint16)
    write_dicom(tmp / "frames.dcm", frames, transfer_syntax=uid.RLELossless)
    vol = RNG.integers(0, 4000, (11, 12, 10)).astype(np.int16)
    extra = [{"RescaleIntercept": -1024.0 + i, "RescaleSlope": 1.0 + (i % 2)} for i in range(11)]
    write_series(tmp / "ct", vol, extra=extra)
    level = replace(dicom_dask.open_tiled(tmp / "rgb.dcm"), chunk_edge=32)
    multi_level = replace(dicom_dask.open_tiled(tmp / "multi.dcm"), chunk_edge=32)
    planes_level = replace(dicom_dask.open_tiled(tmp / "planes.dcm"), chunk_edge=32)
    volume = dicom_dask.open_volume(tmp / "ct", chunk_bytes=3 * 12 * 10 * 2)
    out = {
        "level": (level.array, rgb, (16, 16, 3)),
        "multi": (multi_level.array, multi, (1, 1, 16, 16)),
        "frames": (
            dicom_dask.open_frames(tmp / "frames.dcm").to_dask(frames_per_chunk=2),
            frames,
            (1, 12, 10),
        ),
        "volume": (volume.array, volume.array.compute(), (1, 12, 10)),
        "transformed level": (level.transformed().array, rgb.astype(np.float32), (16, 16, 3)),
        "transformed planes": (
            planes_level.transformed().array,
            planes.astype(np.float32),
            (1, 1, 16, 16),
        ),
        "transformed volume": (volume.transformed().array, None, (1, 12, 10)),
    }
    out["paths"] = {"rgb": tmp / "rgb.dcm"}
    hu = out["transformed volume"][0]
    out["transformed volume"] = (hu, dask.base.compute(hu)[0], (1, 12, 10))
    return out


def _expected_tiles(key: tuple[Any, ...], shape: tuple[int, ...], chunk: tuple[int, ...]) -> set:
    """Chunk coordinates holding the elements ``key`` (one entry per axis) selects."""
    per_axis = []
    for k, n, c in zip(key, shape, chunk, strict=False):
        pos = np.atleast_1d(np.arange(n)[k])
        if not len(pos):
            return set()
        per_axis.append(sorted(set((pos // c).tolist())))
    for n, c in zip(shape[len(key) :], chunk[len(key) :], strict=False):
        per_axis.append(list(range(-(-n // c))))
    return set(itertools.product(*per_axis))


def _graph_reads(
    sliced: da.Array, key: tuple[Any, ...], shape: tuple[int, ...], chunk: tuple[int, ...]
) -> collections.Counter:
    """How often the graph of ``sliced`` (``key``, one entry per axis, of an array of
    ``shape`` in chunks of ``chunk``) reads each chunk: once per output block that selects
    an element of it."""
    per_axis: list[list[np.ndarray]] = []  # per reader axis, the positions of each block
    blocks = iter(sliced.chunks)
    for k, n in zip(key, shape, strict=True):
        pos = np.arange(n)[k]
        if np.ndim(pos) == 0:
            per_axis.append([np.atleast_1d(pos)])
            continue
        bounds = np.cumsum((0, *next(blocks)))
        per_axis.append([pos[a:b] for a, b in itertools.pairwise(bounds)])
    reads: collections.Counter = collections.Counter()
    for block in itertools.product(*per_axis):
        if any(not len(p) for p in block):
            continue
        reads.update(
            itertools.product(
                *[np.unique(p // c).tolist() for p, c in zip(block, chunk, strict=True)]
            )
        )
    return reads


@st.composite
def selections(draw: Any, shape: tuple[int, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``(key, full)``: a key for ``shape`` (maybe with Ellipsis, maybe short) and the
    same selection written out with one entry per axis."""
    ndim = len(shape)
    list_axis = draw(st.none() | st.integers(0, ndim - 1))
    full: list[Any] = []
    for axis, n in enumerate(shape):
        if axis == list_axis:
            full.append(draw(st.lists(st.integers(-n, n - 1), max_size=5)))
            continue
        bound = st.none() | st.integers(-n - 2, n + 2)
        step = st.none() | st.sampled_from([1, 2, 3, 5, 17, -1, -2, -3, -7])
        choices = [st.builds(slice, bound, bound, step)]
        if list_axis is None:  # integers with a list: NumPy and dask differ (see below)
            choices.append(st.integers(-n, n - 1))
        full.append(draw(st.one_of(*choices)))
    key = list(full)
    form = draw(st.sampled_from(["full", "ellipsis", "short"]))
    if form == "ellipsis":
        lo = draw(st.integers(0, ndim))
        hi = draw(st.integers(lo, ndim))
        for i in range(lo, hi):
            full[i] = slice(None)
        key = [*key[:lo], Ellipsis, *key[hi:]]
    elif form == "short":
        cut = draw(st.integers(0, ndim))
        for i in range(cut, ndim):
            full[i] = slice(None)
        key = key[:cut]
    return tuple(key), tuple(full)


NAMES = [
    "level",
    "multi",
    "frames",
    "volume",
    "transformed level",
    "transformed planes",
    "transformed volume",
]


@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_selections_read_exactly_the_touched_tiles(
    images, monkeypatch, name: str, data: Any
) -> None:
    array, materialised, chunk = images[name]
    assert isinstance(array, ReaderArray)
    key, full = data.draw(selections(array.shape))
    counter = Counter(monkeypatch)
    sliced = array[key]
    assert isinstance(sliced, ReaderArray)
    expected = materialised[key]
    reader_shape = array.reader.shape
    touched = _expected_tiles(full, reader_shape, chunk)
    # through the dask graph (the threaded scheduler, as users run it)
    got = da.Array.compute(sliced, scheduler="threads")
    np.testing.assert_array_equal(got, expected)
    # each task reads each chunk it needs once: a chunk is read once per block of the
    # output that selects from it (an unsorted list with repeats costs more only when its
    # revisits span more positions than a block holds, see lazy._unsorted_chunks)
    reads = _graph_reads(sliced, full, reader_shape, chunk)
    assert set(reads) == touched
    fetched = counter.take()
    assert collections.Counter(fetched) == reads
    # a reduction over the slice reads the same chunks, as often
    if sliced.size:
        total = da.Array.compute(sliced.astype(np.float64).sum(), scheduler="sync")
        assert np.isclose(total, expected.astype(np.float64).sum())
        assert collections.Counter(counter.take()) == reads
    # compute(): one direct read of the selection, every chunk once
    np.testing.assert_array_equal(sliced.compute(scheduler="sync"), expected)
    assert sorted(counter.take()) == sorted(touched)
    # dask's assert_eq persists the array (the graph) before it computes it
    assert_eq(sliced, expected)
    assert collections.Counter(counter.take()) == reads


def test_an_unsorted_list_with_repeats_reads_each_frame_once(images, monkeypatch) -> None:
    """The selection that once read frame 0 twice through the graph (two frames per block):
    the output blocks follow the source blocks the list revisits, so each is read once."""
    array, materialised, _ = images["frames"]
    counter = Counter(monkeypatch)
    for key in ([2, 0, 0, -1], [3, 3, 0, 8, 8], [5, 4, 5, 4, 0]):
        sliced = array[key]
        got = da.Array.compute(sliced, scheduler="threads")
        np.testing.assert_array_equal(got, materialised[key])
        fetched = counter.take()
        wanted = {(int(f), 0, 0) for f in np.arange(len(materialised))[key]}
        assert sorted(fetched) == sorted(wanted), (key, sliced.chunks)


def test_integer_with_list_follows_dask(images) -> None:
    """An integer and a list on separate axes index each axis on its own, as dask does
    (NumPy moves the list's axis first)."""
    array, materialised, _ = images["multi"]
    reference = da.from_array(materialised, chunks=(1, 1, 16, 16))
    for key in [(0, slice(None), slice(None), [3, 1, 40]), (1, [1, 0], 5, slice(2, 30, 3))]:
        assert_eq(array[key], reference[key])
    with pytest.raises(NotImplementedError):
        array[[0, 1], :, [1, 2]]  # several lists: dask's own error
    assert_eq(array[None, 0, 1], materialised[None, 0, 1])  # dask's indexing handles None
    mask = np.zeros(40, bool)
    mask[[3, 7, 8]] = True
    assert_eq(array[:, :, mask], materialised[:, :, mask])
    with pytest.raises(IndexError):
        array[2]


def test_slices_compose_and_keep_one_read_per_chunk(images, monkeypatch) -> None:
    array, materialised, _ = images["level"]
    counter = Counter(monkeypatch)
    view = array[60:5:-2][3:20, ::-3][::2]
    expected = materialised[60:5:-2][3:20, ::-3][::2]
    assert_eq(view, expected)
    counter.take()
    np.testing.assert_array_equal(da.Array.compute(view), expected)
    rows = {int(r) // 16 for r in np.arange(70)[60:5:-2][3:20][::2]}
    assert {c[0] for c in counter.take()} == rows
    # pickling keeps the class and the direct read
    again = pickle.loads(pickle.dumps(view))
    assert isinstance(again, ReaderArray)
    np.testing.assert_array_equal(again.compute(), expected)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 200),
    blocks=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    start=st.integers(-250, 250),
    stop=st.one_of(st.none(), st.integers(-250, 250)),
    step=st.integers(-30, 30).filter(bool),
    then=st.one_of(
        st.integers(-250, 250),
        st.builds(
            slice,
            st.none() | st.integers(-50, 50),
            st.none() | st.integers(-50, 50),
            st.none() | st.integers(-7, 7).filter(bool),
        ),
        st.lists(st.integers(-50, 50), max_size=6),
    ),
)
def test_evenly_spaced_positions_kept_as_ranges_match_arrays(
    n: int, blocks: list[int], start: int, stop: int | None, step: int, then: Any
) -> None:
    """An axis selected by slices keeps its positions as a ``range``; its chunks, its
    key for the reader and a further selection equal those of the same positions held
    as an array (as they are after an integer list)."""
    from dicom_dask.chunks.selection import compact, normalize
    from dicom_dask.images.lazy import _as_key, _axis_chunks, _pick

    bounds = np.cumsum([0, *blocks])
    edges = np.asarray([*bounds[bounds < n].tolist(), n], dtype=np.int64)
    (k,) = normalize(slice(start, stop, step), (n,))
    as_range, as_array = _pick(range(n), k), np.arange(n, dtype=np.int64)[k]
    assert isinstance(as_range, range)
    assert list(as_range) == as_array.tolist()
    assert _axis_chunks(as_range, edges) == _axis_chunks(as_array, edges)
    key, reference = _as_key(as_range), compact(as_array)
    assert isinstance(key, slice) and isinstance(reference, slice)
    assert key == reference
    try:
        (k2,) = normalize(then, (len(as_range),))
    except IndexError:
        return
    picked, expected = _pick(as_range, k2), _pick(as_array, k2)
    if isinstance(expected, int):
        assert picked == expected
    else:
        assert np.asarray(picked).tolist() == expected.tolist()
        assert _axis_chunks(picked, edges) == _axis_chunks(expected, edges)


def test_compute_reads_directly_unless_the_scheduler_is_elsewhere(images, monkeypatch) -> None:
    import dask.base

    array, materialised, _ = images["level"]
    monkeypatch.setattr(dask.base, "compute", lambda *a, **k: pytest.fail("went through dask"))
    np.testing.assert_array_equal(array[3:50, 7:80].compute(), materialised[3:50, 7:80])
    np.testing.assert_array_equal(np.asarray(array[:, 5]), materialised[:, 5])
    with pytest.raises(pytest.fail.Exception):  # other schedulers run the graph
        array.compute(scheduler="processes")
    with pytest.raises(pytest.fail.Exception), dask.callbacks.Callback():
        array.compute()  # so do callbacks (progress bars)


def test_tasks_are_made_only_when_dask_asks_for_them(images) -> None:
    """Opening, slicing and reading directly build no task; the graph, when asked for,
    has one task per block and pickles as a plain mapping."""
    _, materialised, _ = images["level"]
    fresh = replace(dicom_dask.open_tiled(images["paths"]["rgb"]), chunk_edge=32).array
    view = fresh[3:50, 7:80]
    layers = [view.dask.layers[view.name].mapping, fresh.dask.layers[fresh.name].mapping]
    np.testing.assert_array_equal(view.compute(), materialised[3:50, 7:80])
    assert [m._tasks for m in layers] == [None, None]
    graph = dict(view.__dask_graph__())
    assert layers[0]._tasks is not None and layers[1]._tasks is None
    assert set(graph) >= set(itertools.product([view.name], *map(range, view.numblocks)))
    with dask.callbacks.Callback():  # runs the graph
        np.testing.assert_array_equal(view.compute(), materialised[3:50, 7:80])
    restored = pickle.loads(pickle.dumps(fresh.dask.layers[fresh.name]))
    assert type(restored.mapping) is dict
    assert len(restored.mapping) == int(np.prod(fresh.numblocks))


def test_xarray_sel_and_reductions_read_only_touched_tiles(tmp_path, monkeypatch) -> None:
    import xarray as xr

    rgb = RNG.integers(0, 255, (96, 128, 3)).astype(np.uint8)
    path = write_slide(tmp_path / "s.dcm", rgb, tile=(16, 16), transfer_syntax=uid.RLELossless)
    ds = xr.open_dataset(path, engine="dicom")
    counter = Counter(monkeypatch)
    part = ds["image"].isel(y=slice(20, 40), x=slice(33, 47))
    np.testing.assert_array_equal(part.values, rgb[20:40, 33:47])
    assert set(counter.take()) == {(r, c, 0) for r in (1, 2) for c in (2,)}
    y = ds["y"].values
    mean = ds["image"].sel(y=slice(y[50], y[60])).mean().compute()
    assert np.isclose(float(mean), rgb[50:61].mean())
    assert {c[0] for c in counter.take()} == {3}


def test_dask_still_does_not_fuse_nofancy_slices() -> None:
    """The reason ReaderArray exists. When this fails, dask fuses slices into
    ``from_array(..., fancy=False)`` reads (and perhaps negative steps and arrays with
    ``fancy=True``): then plain ``from_array`` may be enough (see ``images/lazy.py``)."""

    class Recorder:
        shape, dtype, ndim = (64, 64), np.dtype("u1"), 2

        def __init__(self) -> None:
            self.keys: list[Any] = []

        def __getitem__(self, key: Any) -> np.ndarray:
            self.keys.append(key)
            return np.zeros(self.shape, self.dtype)[key]

    reader = Recorder()
    meta = np.empty((0, 0), np.uint8)
    x = da.from_array(reader, chunks=32, fancy=False, asarray=False, meta=meta)
    x[3:7, 5:9].compute(scheduler="sync")
    assert reader.keys == [(slice(0, 32), slice(0, 32))]  # a whole block, then cut
    reader.keys.clear()
    y = da.from_array(reader, chunks=32, fancy=True, asarray=False, meta=meta)
    y[3:7, 5:9].compute(scheduler="sync")
    assert reader.keys == [(slice(3, 7), slice(5, 9))]  # fused
    reader.keys.clear()
    y[40:20:-1, 5].compute(scheduler="sync")
    assert (slice(32, 64, None), slice(0, 32, None)) in reader.keys  # not fused
    reader.keys.clear()
    y[[40, 3], 5].compute(scheduler="sync")
    assert any(k[0] == slice(0, 32) or k[0] == slice(32, 64) for k in reader.keys)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_patch_selections_read_exactly_the_touched_tiles(images, monkeypatch, data: Any) -> None:
    """``PatchSampler.to_dask()``: any selection of patches and of pixels within them."""
    level = dicom_dask.open_tiled(images["paths"]["rgb"])
    sampler = dicom_dask.PatchSampler(level, (20, 14), stride=(13, 17), padding=5)
    patches = np.stack([p.pixels for p in sampler])
    array = sampler.to_dask()
    key, full = data.draw(selections(array.shape))
    counter = Counter(monkeypatch)
    expected = patches[key]
    np.testing.assert_array_equal(da.Array.compute(array[key], scheduler="threads"), expected)
    # the level pixels under the selection, their tiles
    which = np.atleast_1d(np.arange(len(sampler))[full[0]])
    r = np.atleast_1d(np.arange(array.shape[1])[full[1]])
    c = np.atleast_1d(np.arange(array.shape[2])[full[2]])
    samples = np.atleast_1d(np.arange(3)[full[3]])
    touched = set()
    if len(samples):
        for i in which.tolist():
            x, y = (int(v) - 5 for v in sampler.positions[i])
            ys = [v for v in (y + r).tolist() if 0 <= v < 70]
            xs = [v for v in (x + c).tolist() if 0 <= v < 90]
            touched |= {(0, 0, a // 16, b // 16, 0) for a in ys for b in xs}
    assert set(counter.take()) == touched
    assert_eq(array[key], expected)
    assert set(counter.take()) == touched
