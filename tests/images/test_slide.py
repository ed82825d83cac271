"""Synthetic slides written by the tests, compared with NumPy assemblies of their tiles."""

from __future__ import annotations

import pickle

import numpy as np
import pydicom
import pytest
import zarr
from dask.array.utils import assert_eq
from pydicom import uid

import dicom_dask
from dicom_dask.errors import LayoutError, LayoutWarning, NoImagesError
from dicom_dask.testing import make_slide_dataset, write_slide

RNG = np.random.default_rng(42)


def _matrix(*shape: int, dtype: str = "u1") -> np.ndarray:
    return RNG.integers(0, 255, shape).astype(dtype)


def test_tiled_full_focal_planes_and_optical_paths(tmp_path) -> None:
    m = _matrix(3, 2, 100, 130)  # 3 optical paths x 2 focal planes
    path = write_slide(
        tmp_path / "full.dcm",
        m,
        tile=(32, 32),
        transfer_syntax=uid.RLELossless,
        optical_paths=["DAPI", "FITC", "TRITC"],
        focal_planes=[0.0, 1.5],
    )
    level = dicom_dask.open_tiled(path)
    assert level.array.shape == (3, 2, 100, 130)
    assert_eq(level.array, m)
    assert [c.identifier for c in level.channels] == ["DAPI", "FITC", "TRITC"]
    assert level.focal_planes == (0.0, 1.5)  # µm
    slide = dicom_dask.open_slide(path)
    assert slide.levels[0].shape == (3, 2, 100, 130)
    np.testing.assert_array_equal(
        slide.read_region((5, 7), 0, (40, 30), channel=2, plane=1), m[2, 1, 7:37, 5:45]
    )
    # the virtual OME-Zarr: (c, z, y, x), read by plain zarr through the registered codec
    group = zarr.open_group(slide.store, mode="r")
    assert group["0"].shape == (3, 2, 100, 130)
    np.testing.assert_array_equal(group["0"][...], m)


def test_tiled_sparse_missing_tiles_shuffled_order(tmp_path) -> None:
    m = _matrix(70, 90, 3)
    omit = [(0, 1), (1, 2), (2, 0)]
    path = write_slide(
        tmp_path / "sparse.dcm",
        m,
        tile=(32, 32),
        organization="TILED_SPARSE",
        transfer_syntax=uid.ExplicitVRLittleEndian,
        omit=omit,
        shuffle=3,
    )
    level = dicom_dask.open_tiled(path, fill_value=7)
    expected = m.copy()
    for r, c in omit:
        expected[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32] = 7
    assert_eq(level.array, expected)
    present = np.ones((3, 3), dtype=bool)
    for r, c in omit:
        present[r, c] = False
    np.testing.assert_array_equal(level.tiles_present[0, 0], present)
    mask = level.present_mask()
    assert mask.shape == m.shape and mask.dtype == bool
    pixels = np.repeat(np.repeat(present, 32, 0), 32, 1)[:70, :90, None].repeat(3, 2)
    np.testing.assert_array_equal(mask.compute(), pixels)
    # the zarr path reads absent tiles as the fill value too
    slide = dicom_dask.open_slide(path, fill_value=7)
    np.testing.assert_array_equal(slide.zarr["0"][...], np.moveaxis(expected, -1, 0))
    assert level.image.positions is not None and level.image.positions.method == "scan"


def test_sparse_scan_equals_pydicom_parse(tmp_path) -> None:
    from dicom_dask.frames import index_frames
    from dicom_dask.frames.functional_groups import _parse, slide_positions

    m = _matrix(2, 3, 40, 50)
    path = write_slide(
        tmp_path / "s.dcm",
        m,
        tile=(8, 8),
        organization="TILED_SPARSE",
        transfer_syntax=uid.ExplicitVRLittleEndian,
        shuffle=1,
        focal_planes=[1.0, 2.5, 4.0],
        optical_paths=["a", "b"],
    )
    index = index_frames(path)
    n = index.header.description.number_of_frames
    fast = slide_positions(index.header.dataset, url=path, number_of_frames=n)
    slow = _parse(pydicom.dcmread(path, stop_before_pixels=True), n, path)
    assert fast.method == "scan" and slow.method == "pydicom"
    np.testing.assert_array_equal(fast.rows, slow.rows)
    np.testing.assert_array_equal(fast.columns, slow.columns)
    np.testing.assert_array_equal(fast.z_offsets, slow.z_offsets)
    np.testing.assert_array_equal(fast.channels, slow.channels)
    assert_eq(dicom_dask.open_tiled(path).array, m)


def test_implicit_vr_sparse(tmp_path) -> None:
    m = _matrix(40, 40)
    ds = make_slide_dataset(
        m,
        tile=(16, 16),
        organization="TILED_SPARSE",
        transfer_syntax=uid.ImplicitVRLittleEndian,
        shuffle=0,
    )
    path = tmp_path / "implicit.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=True)
    assert_eq(dicom_dask.open_tiled(path).array, m)


def test_pyramid_with_label_and_overview(tmp_path) -> None:
    base = _matrix(256, 320, 3)
    levels = [base, base[::2, ::2], base[::4, ::4]]
    folder = tmp_path / "slide"
    folder.mkdir()
    common = {"frame_of_reference": "1.2.3.4", "container_id": "C1", "study_uid": "1.2.3"}
    series = pydicom.uid.generate_uid()
    for i, m in enumerate(levels):
        ds = make_slide_dataset(
            m,
            tile=(64, 64),
            transfer_syntax=uid.RLELossless,
            pixel_spacing=0.00025 * 2**i,
            **common,
        )
        ds.SeriesInstanceUID = series
        ds.save_as(folder / f"level{2 - i}.dcm", enforce_file_format=True)  # names misleading
    for kind, shape in (("LABEL", (60, 80, 3)), ("OVERVIEW", (90, 200, 3))):
        m = _matrix(*shape)
        ds = make_slide_dataset(
            m, tile=shape[:2], transfer_syntax=uid.RLELossless, image_type=kind, **common
        )
        ds.SeriesInstanceUID = series
        ds.save_as(folder / f"{kind.lower()}.dcm", enforce_file_format=True)
    (folder / "notes.txt").write_text("not DICOM")
    slide = dicom_dask.open_slide(folder)
    assert slide.dimensions == [(320, 256), (160, 128), (80, 64)]
    assert slide.downsamples == [1.0, 2.0, 4.0]
    for got, expected in zip(slide.levels, levels, strict=True):
        assert_eq(got, expected)
    assert slide.label is not None and slide.label.shape == (60, 80, 3)
    assert slide.overview is not None and slide.thumbnail is None
    # virtual OME-Zarr with three datasets, validated against the NGFF 0.5 model
    models = pytest.importorskip("ome_zarr_models.v05.image")
    image = models.Image.from_zarr(slide.zarr)
    scales = [
        d.coordinateTransformations[0].scale for d in image.attributes.ome.multiscales[0].datasets
    ]
    assert scales == [[1.0, 0.25, 0.25], [1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]
    for i, expected in enumerate(levels):
        np.testing.assert_array_equal(slide.zarr[str(i)][...], np.moveaxis(expected, -1, 0))
    # list and list order are by pixel spacing, whatever the file names
    assert slide.pyramid[0].urls[0].endswith("level2.dcm")


def test_edge_tiles_and_region_padding(tmp_path) -> None:
    m = _matrix(100, 75)
    path = write_slide(
        tmp_path / "edge.dcm", m, tile=(64, 64), transfer_syntax=uid.ExplicitVRLittleEndian
    )
    slide = dicom_dask.open_slide(path, fill_value=255)
    assert slide.levels[0].shape == (100, 75)
    assert_eq(slide.levels[0], m)
    region = slide.read_region((60, 90), 0, (30, 20))
    expected = np.full((20, 30), 255, dtype=np.uint8)
    expected[:10, :15] = m[90:100, 60:75]
    np.testing.assert_array_equal(region, expected)
    np.testing.assert_array_equal(slide.read_region((-5, -5), 0, (10, 10))[5:, 5:], m[:5, :5])


def test_instances_of_one_level_merge_by_optical_path(tmp_path) -> None:
    a, b = _matrix(50, 60), _matrix(50, 60)
    common = {"frame_of_reference": "1.2.3", "container_id": "C", "study_uid": "1.2"}
    series = pydicom.uid.generate_uid()
    for name, m, op in (("a.dcm", a, "R"), ("b.dcm", b, "G")):
        ds = make_slide_dataset(
            m,
            tile=(16, 16),
            transfer_syntax=uid.ExplicitVRLittleEndian,
            optical_paths=[op],
            **common,
        )
        ds.SeriesInstanceUID = series
        ds.save_as(tmp_path / name, enforce_file_format=True)
    slide = dicom_dask.open_slide([tmp_path / "a.dcm", tmp_path / "b.dcm"])
    assert [c.identifier for c in slide.optical_paths] == ["R", "G"]
    assert_eq(slide.levels[0], np.stack([a, b])[:, None])


def test_index_sidecar_reopens_without_reading(tmp_path, monkeypatch) -> None:
    m = _matrix(80, 80, 3)
    path = write_slide(
        tmp_path / "s.dcm",
        m,
        tile=(16, 16),
        organization="TILED_SPARSE",
        transfer_syntax=uid.RLELossless,
        omit=[(1, 1)],
        shuffle=2,
        offset_table="none",
    )
    slide = dicom_dask.open_slide(path)
    slide.save_index(tmp_path / "s.json")
    import dicom_dask.frames as frames_mod

    def fail(*a, **k):
        raise AssertionError("the index must not read the file")

    monkeypatch.setattr(frames_mod, "index_frames", fail)
    again = dicom_dask.open_slide(index=tmp_path / "s.json")
    assert_eq(again.levels[0], slide.levels[0].compute())
    assert again.pyramid[0].image.positions is not None
    # the sidecar is a kerchunk reference set of the virtual OME-Zarr
    import json

    import fsspec

    refs = json.loads((tmp_path / "s.json").read_text())
    fs = fsspec.filesystem("reference", fo={"version": 1, "refs": refs["refs"]})
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    group = zarr.open_group(store, mode="r")
    np.testing.assert_array_equal(group["0"][...], again.zarr["0"][...])


def test_to_ome_zarr_roundtrip(tmp_path) -> None:
    m = _matrix(200, 150, 3)
    path = write_slide(tmp_path / "s.dcm", m, tile=(32, 32), transfer_syntax=uid.RLELossless)
    slide = dicom_dask.open_slide(path)
    group = dicom_dask.to_ome_zarr(slide, tmp_path / "out.zarr", chunks=64, progress=False)
    again = zarr.open_group(tmp_path / "out.zarr", mode="r")
    np.testing.assert_array_equal(again["0"][...], np.moveaxis(m, -1, 0))
    assert again.attrs["ome"]["multiscales"] == group.attrs["ome"]["multiscales"]
    models = pytest.importorskip("ome_zarr_models.v05.image")
    models.Image.from_zarr(again)
    with pytest.raises(Exception, match=r"exist|contains"):
        dicom_dask.to_ome_zarr(slide, tmp_path / "out.zarr", progress=False)


def test_levels_pickle_small_and_compute_in_processes(tmp_path) -> None:
    m = _matrix(128, 128, 3)
    path = write_slide(tmp_path / "s.dcm", m, tile=(32, 32), transfer_syntax=uid.RLELossless)
    level = dicom_dask.open_slide(path, chunk_edge=64).levels[0]
    assert level.chunks == ((64, 64), (64, 64), (3,))
    assert len(pickle.dumps(level)) < 20_000
    assert_eq(level.compute(scheduler="processes", num_workers=2), m)


def test_tiled_full_with_wrong_frame_count(tmp_path) -> None:
    ds = make_slide_dataset(
        _matrix(64, 64), tile=(32, 32), transfer_syntax=uid.ExplicitVRLittleEndian
    )
    ds.TotalPixelMatrixRows = 96  # now 6 tiles are needed, the file has 4
    path = tmp_path / "bad.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(LayoutError, match="needs 6 frames") as info:
        dicom_dask.open_tiled(path)
    assert str(path) in str(info.value)


def test_sparse_off_grid_and_duplicate_tiles(tmp_path) -> None:
    ds = make_slide_dataset(
        _matrix(64, 64),
        tile=(32, 32),
        organization="TILED_SPARSE",
        transfer_syntax=uid.ExplicitVRLittleEndian,
    )
    ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSlideSequence[
        0
    ].RowPositionInTotalImagePixelMatrix = 5
    ds.save_as(tmp_path / "off.dcm", enforce_file_format=True)
    with pytest.raises(LayoutError, match="frame 3 lies at row 5"):
        dicom_dask.open_tiled(tmp_path / "off.dcm")
    ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSlideSequence[
        0
    ].RowPositionInTotalImagePixelMatrix = 1
    ds.save_as(tmp_path / "dup.dcm", enforce_file_format=True)
    # frame 3 now covers frame 1's tile: the later frame is drawn (tests/images/test_realworld.py)
    with pytest.warns(LayoutWarning, match=r"e.g. frames \[1, 3\]"):
        dicom_dask.open_tiled(tmp_path / "dup.dcm")


def test_empty_folder_and_no_volume(tmp_path) -> None:
    with pytest.raises(NoImagesError):
        dicom_dask.open_slide(tmp_path / "*.dcm")
    write_slide(
        tmp_path / "label.dcm",
        _matrix(20, 30),
        tile=(20, 30),
        image_type="LABEL",
        transfer_syntax=uid.ExplicitVRLittleEndian,
    )
    with pytest.raises(NoImagesError, match="open_tiled"):
        dicom_dask.open_slide(tmp_path / "label.dcm")
    assert dicom_dask.open_tiled(tmp_path / "label.dcm").array.shape == (20, 30)


def test_header_claiming_a_huge_matrix_is_refused(tmp_path) -> None:
    ds = make_slide_dataset(
        _matrix(64, 64),
        tile=(32, 32),
        organization="TILED_SPARSE",
        transfer_syntax=uid.ExplicitVRLittleEndian,
    )
    ds.TotalPixelMatrixRows = ds.TotalPixelMatrixColumns = 1_000_000  # 10^12 pixels
    ds.save_as(tmp_path / "huge.dcm", enforce_file_format=True)
    with pytest.raises(LayoutError, match="refusing to allocate") as info:
        dicom_dask.open_tiled(tmp_path / "huge.dcm")
    assert "1000000 x 1000000" in str(info.value)
    ds = make_slide_dataset(
        _matrix(64, 64), tile=(32, 32), transfer_syntax=uid.ExplicitVRLittleEndian
    )
    ds.TotalPixelMatrixRows = ds.TotalPixelMatrixColumns = 1_000_000
    ds.save_as(tmp_path / "huge-full.dcm", enforce_file_format=True)
    with pytest.raises(LayoutError, match="976562500 tiles"):
        dicom_dask.open_tiled(tmp_path / "huge-full.dcm")


def test_instances_of_one_level_merge_by_focal_plane(tmp_path) -> None:
    planes = {1.0: _matrix(40, 48), -2.0: _matrix(40, 48)}
    common = {"frame_of_reference": "1.2.9", "container_id": "Z", "study_uid": "1.9"}
    series = pydicom.uid.generate_uid()
    paths = []
    for z, m in planes.items():
        ds = make_slide_dataset(
            m, tile=(16, 16), transfer_syntax=uid.ExplicitVRLittleEndian, **common
        )
        ds.SeriesInstanceUID = series
        pos = pydicom.Dataset()
        pos.ZOffsetInSlideCoordinateSystem = z
        ds.SharedFunctionalGroupsSequence[0].PlanePositionSlideSequence = [pos]
        paths.append(tmp_path / f"z{z}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    slide = dicom_dask.open_slide(paths)
    assert slide.focal_planes == (-2.0, 1.0)
    assert_eq(slide.levels[0], np.stack([planes[-2.0], planes[1.0]])[None])
    assert slide.zarr["0"].shape == (1, 2, 40, 48)  # (c, z, y, x)
