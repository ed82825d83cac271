"""Synthetic series and enhanced images written by the tests: arrays, affines, errors."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from dask.array.utils import assert_eq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import uid

import dicom_dask
from dicom_dask.errors import LayoutError, NoImagesError
from dicom_dask.frames import index_frames
from dicom_dask.images.geometry import (
    GeometryPolicy,
    affine_from_geometry,
    measure_slices,
    slice_direction,
    stack_geometry,
)
from dicom_dask.images.layout import volume_layout
from dicom_dask.images.series import Stack, group_stacks, slice_records
from dicom_dask.testing import make_enhanced_dataset, series_positions, write_series

RNG = np.random.default_rng(11)
OBLIQUE = (0.8660254, 0.5, 0.0, -0.1294095, 0.2241439, -0.9659258)


def _volume(n: int = 6, rows: int = 12, cols: int = 10) -> np.ndarray:
    return RNG.integers(-1000, 3000, (n, rows, cols)).astype(np.int16)


def _expected_affine(positions, orientation=(1, 0, 0, 0, 1, 0), spacing=(0.5, 0.75)):
    """highdicom's convention: slices run against row x column cosines."""
    direction = slice_direction(orientation)
    order = np.argsort(np.asarray(positions) @ direction)
    step = (positions[order[-1]] - positions[order[0]]) / (len(positions) - 1)
    return order, affine_from_geometry(orientation, spacing, positions[order[0]], step)


def test_shuffled_names_and_instance_numbers(tmp_path) -> None:
    vol = _volume()
    positions = series_positions(len(vol), orientation=OBLIQUE, slice_spacing=2.5)
    write_series(tmp_path, vol, positions=positions, orientation=OBLIQUE, shuffle=3)
    volume = dicom_dask.open_volume(tmp_path)
    order, affine = _expected_affine(positions, OBLIQUE)
    assert_eq(volume.array, vol[order])
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    assert volume.metadata["geometry"]["findings"] == []
    np.testing.assert_allclose(volume.spacing, (2.5, 0.5, 0.75), atol=1e-6)
    # each slice index maps to its file's Image Position (Patient)
    for s in range(len(vol)):
        np.testing.assert_allclose(
            volume.map_indices_to_reference([[s, 0, 0]])[0], positions[order[s]], atol=1e-5
        )
    # the zarr path (one chunk per slice, each from its own file) gives the same pixels
    np.testing.assert_array_equal(volume.zarr[...], vol[order])


def test_two_series_in_one_folder(tmp_path) -> None:
    a, b = _volume(4), _volume(5)
    write_series(tmp_path, a, series_uid="1.2.3.1", prefix="a")
    write_series(tmp_path, b, series_uid="1.2.3.2", prefix="b", shuffle=1)
    listing = dicom_dask.list_series(tmp_path)
    assert sorted(s["series_instance_uid"] for s in listing) == ["1.2.3.1", "1.2.3.2"]
    with pytest.raises(NoImagesError, match="holds 2 stacks"):
        dicom_dask.open_volume(tmp_path)
    vol_b = dicom_dask.open_volume(tmp_path, select="1.2.3.2")
    assert_eq(vol_b.array, b[::-1])  # positions increase along +z, slices run along -z


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing", r"1 missing slice\(s\): gaps of \[4\] mm where the spacing is 2 mm"),
        ("nonuniform", r"non-uniform spacing: gaps between sorted slices are \[2, 2, 3, 2\] mm"),
        ("tilt", r"degrees off their normal \(gantry tilt\)"),
    ],
)
def test_irregular_series_raise_by_default(tmp_path, case: str, match: str) -> None:
    vol = _volume(6)
    positions = series_positions(6, slice_spacing=2.0)
    if case == "missing":
        vol, positions = np.delete(vol, 2, axis=0), np.delete(positions, 2, axis=0)
    elif case == "nonuniform":
        vol, positions = vol[:5], positions[:5].copy()
        positions[2:, 2] += 1.0
    elif case == "tilt":
        positions = series_positions(6, slice_spacing=2.0, tilt=(0.0, 0.3, 0.0))
    write_series(tmp_path, vol, positions=positions)
    with pytest.raises(LayoutError, match=match):
        dicom_dask.open_volume(tmp_path)


def test_missing_slice_kept_with_positions_policy(tmp_path) -> None:
    vol = _volume(6)
    positions = series_positions(6, slice_spacing=2.0)
    write_series(tmp_path, np.delete(vol, 2, axis=0), positions=np.delete(positions, 2, axis=0))
    volume = dicom_dask.open_volume(tmp_path, geometry="positions", fill_value=-2048)
    expected = vol[::-1].copy()
    expected[3] = -2048  # slice 2 in ascending order is slice 3 in highdicom's order
    assert_eq(volume.array, expected)
    np.testing.assert_array_equal(volume.missing_slices, [False, False, False, True, False, False])
    assert np.isnan(volume.positions[3]).all()
    assert volume.metadata["geometry"]["policy"] == "positions"
    assert "missing slice" in volume.metadata["geometry"]["findings"][0]
    np.testing.assert_allclose(volume.spacing[0], 2.0)


def test_nonuniform_spacing_kept_with_positions_policy(tmp_path) -> None:
    vol = _volume(5)
    positions = series_positions(5, slice_spacing=2.0)
    positions[2:, 2] += 1.0
    write_series(tmp_path, vol, positions=positions)
    volume = dicom_dask.open_volume(tmp_path, geometry="positions")
    assert_eq(volume.array, vol[::-1])
    np.testing.assert_allclose(volume.positions, positions[::-1])
    assert volume.metadata["geometry"]["findings"][0].startswith("non-uniform spacing")


def test_gantry_tilt_gives_a_sheared_affine(tmp_path) -> None:
    vol = _volume(6)
    positions = series_positions(6, slice_spacing=2.0, tilt=(0.0, 0.3, 0.0))
    write_series(tmp_path, vol, positions=positions)
    kept = dicom_dask.open_volume(tmp_path, geometry="positions")  # real positions, not regular
    assert not kept.regular
    np.testing.assert_allclose(kept.positions, positions[::-1], atol=1e-5)
    volume = dicom_dask.open_volume(tmp_path, geometry="shear")
    assert volume.regular
    assert_eq(volume.array, vol[::-1])
    # every slice's first pixel maps exactly to its Image Position (Patient)
    np.testing.assert_allclose(
        volume.map_indices_to_reference(np.c_[np.arange(6), np.zeros(6), np.zeros(6)]),
        positions[::-1],
        atol=1e-5,
    )
    assert "gantry tilt" in volume.metadata["geometry"]["findings"][0]


def test_series_with_temporal_positions_is_4d(tmp_path) -> None:
    vol = _volume(8)  # 4 positions x 2 times
    positions = np.repeat(series_positions(4, slice_spacing=3.0), 2, axis=0)
    extra = [{"TemporalPositionIdentifier": 1 + k % 2} for k in range(8)]
    write_series(tmp_path, vol, positions=positions, extra=extra, shuffle=5)
    volume = dicom_dask.open_volume(tmp_path)
    assert volume.shape == (4, 12, 10, 2)
    assert volume.channels == {"TemporalPositionIdentifier": ("1", "2")}
    expected = vol.reshape(4, 2, 12, 10).transpose(0, 2, 3, 1)[::-1]
    assert_eq(volume.array, expected)


def test_enhanced_mr_with_two_stacks(tmp_path) -> None:
    frames = _volume(8)
    pos_a = series_positions(4, slice_spacing=2.0)
    pos_b = series_positions(4, orientation=(0, 1, 0, 0, 0, -1), origin=(5, -100, 80))
    ds = make_enhanced_dataset(
        frames[[0, 4, 1, 5, 2, 6, 3, 7]],
        positions=np.stack([pos_a, pos_b], axis=1).reshape(8, 3),
        stack_ids=["1", "2"] * 4,
    )
    for k in range(1, 8, 2):  # stack 2 is sagittal: a per-frame orientation overrides
        item = pydicom.Dataset()
        item.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.PerFrameFunctionalGroupsSequence[k].PlaneOrientationSequence = [item]
    path = tmp_path / "two-stacks.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(NoImagesError, match="holds 2 stacks"):
        dicom_dask.open_volume(path)
    first = dicom_dask.open_volume(path, select="1")
    assert_eq(first.array, frames[:4][::-1])
    second = dicom_dask.open_volume(path, select="2")
    order, affine = _expected_affine(pos_b, (0, 1, 0, 0, 0, -1))
    assert_eq(second.array, frames[4:][order])
    np.testing.assert_allclose(second.affine, affine, atol=1e-6)


def test_enhanced_temporal_dimension_and_encapsulated(tmp_path) -> None:
    frames = RNG.integers(0, 255, (6, 8, 8)).astype(np.uint8)
    positions = np.repeat(series_positions(3, slice_spacing=1.5), 2, axis=0)
    ds = make_enhanced_dataset(
        frames, positions=positions, temporal=[1, 2] * 3, transfer_syntax=uid.RLELossless
    )
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    volume = dicom_dask.open_volume(path)
    assert volume.channels == {"TemporalPositionIndex": (1, 2)}
    assert_eq(volume.array, frames.reshape(3, 2, 8, 8).transpose(0, 2, 3, 1)[::-1])


def test_conversions_highdicom_xarray_compute(tmp_path) -> None:
    hd = pytest.importorskip("highdicom")
    vol = _volume(5)
    positions = series_positions(5, orientation=OBLIQUE, slice_spacing=1.25)
    write_series(tmp_path, vol, positions=positions, orientation=OBLIQUE)
    volume = dicom_dask.open_volume(tmp_path)
    computed = volume.compute()
    assert isinstance(computed.array, np.ndarray)
    h = volume.to_highdicom()
    assert isinstance(h, hd.Volume)
    np.testing.assert_array_equal(h.array, computed.array)
    np.testing.assert_allclose(h.affine, volume.affine)
    back = dicom_dask.Volume.from_highdicom(h)
    np.testing.assert_allclose(back.affine, volume.affine)
    np.testing.assert_allclose(h.spacing, volume.spacing)
    xr = pytest.importorskip("xarray")
    da = volume.to_xarray()
    assert isinstance(da, xr.DataArray)
    assert da.dims == ("slice", "row", "column")
    np.testing.assert_allclose(np.diff(da["slice"].values), 1.25, atol=1e-6)
    np.testing.assert_allclose(np.diff(da["column"].values), 0.75)
    assert da.name == "image"  # as the xarray backend names it
    assert da.attrs["affine"] == volume.affine.ravel().tolist()  # 1-D: netCDF writes it
    np.testing.assert_array_equal(da.values, computed.array)
    np.testing.assert_allclose(da["position_z"].values, volume.positions[:, 2])


def test_opening_300_files_reads_headers_only(tmp_path, monkeypatch) -> None:
    from fsspec.implementations.local import LocalFileSystem

    vol = RNG.integers(0, 4000, (300, 128, 128)).astype(np.uint16)
    paths = write_series(tmp_path, vol, shuffle=2)
    total = sum(os.path.getsize(p) for p in paths)
    counts = {"requests": 0, "bytes": 0}
    original = LocalFileSystem.cat_file

    def counting(self, path, start=None, end=None, **kwargs):
        data = original(self, path, start=start, end=end, **kwargs)
        counts["requests"] += 1
        counts["bytes"] += len(data)
        return data

    monkeypatch.setattr(LocalFileSystem, "cat_file", counting)
    volume = dicom_dask.open_volume(tmp_path)
    # one 16 KiB header block per file; the 32 KiB of pixels per file are not read
    assert counts["requests"] <= 300
    assert counts["bytes"] <= 300 * 16384
    assert counts["bytes"] < 0.5 * total
    monkeypatch.undo()
    assert_eq(volume.array, vol[::-1])


SHAPE = (7, 6, 5)


@st.composite
def _slicing(draw):
    key = []
    for n in SHAPE:
        kind = draw(st.sampled_from(["all", "range", "int", "reverse"]))
        if kind == "all":
            key.append(slice(None))
        elif kind == "int":
            key.append(draw(st.integers(-n, n - 1)))
        elif kind == "reverse":
            key.append(slice(None, None, -draw(st.integers(1, 3))))
        else:
            start = draw(st.integers(0, n - 1))
            stop = draw(st.integers(start + 1, n))
            key.append(slice(start, stop, draw(st.integers(1, 3))))
    return tuple(key), draw(st.permutations([0, 1, 2])), draw(st.sets(st.integers(0, 2)))


@pytest.fixture(scope="module")
def oblique_volume(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oblique")
    vol = RNG.integers(0, 100, SHAPE).astype(np.uint16)
    positions = series_positions(SHAPE[0], orientation=OBLIQUE, slice_spacing=1.7)
    write_series(folder, vol, positions=positions, orientation=OBLIQUE)
    return dicom_dask.open_volume(folder)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_slicing())
def test_slicing_flipping_permuting_keep_the_mapping(oblique_volume, case) -> None:
    key, order, flips = case
    original = oblique_volume
    derived = original[key].flip(sorted(flips)).permute_spatial_axes(order)
    data = original.array.compute()
    # the old index of every new index, built with NumPy on an index grid
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
    norm = tuple(
        slice(k % n, k % n + 1) if isinstance(k, int) else k
        for k, n in zip(key, SHAPE, strict=True)
    )
    g = grid[norm]
    for axis in flips:
        g = np.flip(g, axis=axis)
    g = g.transpose(*order, 3)
    assert derived.spatial_shape == g.shape[:3]
    new_idx = np.stack(np.meshgrid(*[np.arange(n) for n in g.shape[:3]], indexing="ij"), -1)
    np.testing.assert_allclose(
        derived.map_indices_to_reference(new_idx.reshape(-1, 3)),
        original.map_indices_to_reference(g.reshape(-1, 3)),
        atol=1e-6,
    )
    values = data[tuple(g.reshape(-1, 3).T)].reshape(g.shape[:3])
    np.testing.assert_array_equal(derived.array.compute(), values)
    back = derived.map_reference_to_indices(
        original.map_indices_to_reference(g.reshape(-1, 3)), round_output=True
    )
    np.testing.assert_array_equal(back, new_idx.reshape(-1, 3))


def test_files_with_different_encodings_are_refused(tmp_path) -> None:
    vol = _volume(4)
    positions = series_positions(4)
    write_series(tmp_path, vol[:2], positions=positions[:2], series_uid="1.2.3.9", prefix="a")
    write_series(
        tmp_path,
        vol[2:],
        positions=positions[2:],
        series_uid="1.2.3.9",
        prefix="b",
        transfer_syntax=uid.RLELossless,
    )
    with pytest.raises(LayoutError, match="one volume array needs one pixel encoding"):
        dicom_dask.open_volume(tmp_path)


def test_compute_reads_directly_and_equals_dask(tmp_path) -> None:
    """Volume.compute() of an opened volume bypasses dask: the same pixels, missing slices
    filled, and a replaced or derived array is computed through dask."""
    from dataclasses import replace

    rng = np.random.default_rng(8)
    vol = rng.integers(0, 4000, (12, 16, 20), dtype=np.uint16)
    positions = series_positions(13, slice_spacing=1.5)
    keep = [i for i in range(13) if i != 5]  # slice 5 missing
    write_series(
        tmp_path, vol[: len(keep)], positions=positions[keep], transfer_syntax=uid.RLELossless
    )
    v = dicom_dask.open_volume(tmp_path, geometry="positions")
    direct = v.compute().array
    np.testing.assert_array_equal(direct, v.array.compute())
    assert isinstance(direct, np.ndarray)
    np.testing.assert_array_equal(v[2:5].compute().array, v.array[2:5].compute())
    other = replace(v, array=v.array + 1)
    np.testing.assert_array_equal(other.compute().array, v.array.compute() + 1)


def _stack(folder) -> Stack:
    """The one stack of the files in ``folder``, through the public header readers."""
    records = [
        r for path in sorted(folder.iterdir()) for r in slice_records(index_frames(str(path)))
    ]
    (stack,) = group_stacks(records)
    return stack


def test_volume_layout_is_what_open_volume_reads(tmp_path) -> None:
    """A layout says which file and frame each slice and channel reads, before any pixel;
    ``Volume.from_layout`` gives the volume ``open_volume`` gives."""
    vol = _volume(10)  # 5 positions x 2 times, the middle position missing
    positions = np.repeat(series_positions(5, slice_spacing=2.0), 2, axis=0)
    extra = [{"TemporalPositionIdentifier": 1 + k % 2} for k in range(10)]
    keep = [k for k in range(10) if k // 2 != 2]
    write_series(
        tmp_path, vol[keep], positions=positions[keep], extra=[extra[k] for k in keep], shuffle=2
    )
    layout = volume_layout(_stack(tmp_path), where="here", policy=GeometryPolicy.POSITIONS)
    assert layout.shape == (5, 12, 10, 2)
    assert layout.chunk_shape == (1, 12, 10, 1)
    assert layout.grid == (5, 1, 1, 2)
    assert layout.dimension_names == ("slice", "row", "column", "TemporalPositionIdentifier")
    assert layout.channels == {"TemporalPositionIdentifier": ("1", "2")}
    np.testing.assert_array_equal(layout.geometry.missing, [False, False, True, False, False])
    assert layout.slice_files[2] is None
    assert len(layout.placements) == 8  # 4 positions x 2 times: no chunk for the gap
    # slices run against the normal: output slice 0 is the last position written
    for out_slice, position in ((0, 4), (4, 0)):
        for t in range(2):
            ds_index, frame = layout.source_frames[out_slice, t]
            ds = layout.source_datasets[ds_index]
            assert frame == 0
            np.testing.assert_allclose(ds.ImagePositionPatient, positions[2 * position])
            assert str(ds.TemporalPositionIdentifier) == str(t + 1)
    assert (layout.source_frames[2] == -1).all()
    volume = dicom_dask.Volume.from_layout(layout, fill_value=-7)
    opened = dicom_dask.open_volume(tmp_path, geometry="positions", fill_value=-7)
    expected = vol.reshape(5, 2, 12, 10).transpose(0, 2, 3, 1)[::-1].copy()
    expected[2] = -7
    assert_eq(volume.array, expected)
    assert_eq(opened.array, expected)
    np.testing.assert_array_equal(volume.affine, opened.affine)
    assert volume.metadata == opened.metadata
    assert volume.array.name == opened.array.name  # the same graph: the same reads


def test_volume_layout_refuses_repeated_or_missing_slices(tmp_path) -> None:
    vol = _volume(3)
    write_series(tmp_path, vol)
    stack = _stack(tmp_path)
    a, b, c = stack.records
    repeated = Stack((a, b, replace(c, position=b.position)), (), ())
    with pytest.raises(LayoutError, match=r"here: duplicated slice position .* frame 1 and"):
        volume_layout(repeated, where="here", policy=GeometryPolicy.RAISE)
    # a channel value missing at one position (group_stacks would split such a stack)
    timed = [replace(r, channel=(("echo", v),)) for r, v in zip((a, b, c), "112", strict=True)]
    incomplete = Stack(tuple(timed), ("echo",), (("1", "2"),))
    with pytest.raises(LayoutError, match=r"here: no frame at position .* for \{'echo': '1'\}"):
        volume_layout(incomplete, where="here", policy=GeometryPolicy.RAISE)


def test_measure_slices_then_judge_under_the_tolerances() -> None:
    """Measuring sorts and spaces the slices whatever the policy; the tolerances and the
    policy decide what is accepted."""
    positions = series_positions(5, slice_spacing=2.0)
    positions[3:, 2] += 0.03  # one gap 1.5 % longer than the others
    shuffled = positions[[3, 0, 4, 1, 2]]
    measured = measure_slices(shuffled, (1, 0, 0, 0, 1, 0))
    np.testing.assert_array_equal(measured.order, [2, 0, 4, 3, 1])  # against the normal
    np.testing.assert_allclose(measured.gaps, [2.0, 2.03, 2.0, 2.0])
    np.testing.assert_allclose(measured.cosines, 1.0)
    with pytest.raises(LayoutError, match=r"w: 5 slices do not form a regular volume"):
        stack_geometry(shuffled, (1, 0, 0, 0, 1, 0), (0.5, 0.5), where="w")
    with pytest.raises(LayoutError, match=r"w: geometry='shear' needs uniform spacing"):
        stack_geometry(shuffled, (1, 0, 0, 0, 1, 0), (0.5, 0.5), policy="shear", where="w")
    loose = stack_geometry(shuffled, (1, 0, 0, 0, 1, 0), (0.5, 0.5), rtol=0.05)
    assert loose.findings == [] and loose.regular
    np.testing.assert_array_equal(loose.order, measured.order)
    np.testing.assert_allclose(loose.spacing, 8.03 / 4)
