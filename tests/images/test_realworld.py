"""Real-world layouts (issue 16), written the way real writers write them.

Each test builds files with the structure of a public real file that dicom_dask
once refused (see ``dicom_dask.testing.realworld``) and checks the result against
pydicom, file by file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import uid

import dicom_dask
from dicom_dask.errors import LayoutError, LayoutWarning, NoImagesError
from dicom_dask.testing import write_dicom, write_series, write_slide
from dicom_dask.testing.realworld import (
    make_enhanced_dti_dataset,
    make_overlapping_sparse_slide,
    write_dose,
    write_dwi_series,
    write_fmri_series,
    write_magnitude_phase_series,
    write_pyramid_per_level_for,
)

RNG = np.random.default_rng(16)


# -- 8-bit data as OW in Explicit VR Big Endian -------------------------------------------
@pytest.mark.parametrize("frames", [1, 2, 3])
@pytest.mark.parametrize("samples", [1, 3])
def test_big_endian_ow_odd_frames(tmp_path, frames: int, samples: int) -> None:
    """A 3x3 frame of 8-bit samples (9 or 27 bytes) in word-swapped OW equals pydicom."""
    shape = (frames, 3, 3, samples) if samples > 1 else (frames, 3, 3)
    data = RNG.integers(0, 256, shape, dtype=np.uint8)
    path = write_dicom(
        tmp_path / "be.dcm", data, transfer_syntax=uid.ExplicitVRBigEndian, pixel_vr="OW"
    )
    ds = pydicom.dcmread(path)
    assert ds["PixelData"].VR == "OW"
    expected = ds.pixel_array.reshape(shape)
    np.testing.assert_array_equal(expected, data)  # the writer wrote what pydicom reads
    got = np.asarray(dicom_dask.open_frames(path).array)
    np.testing.assert_array_equal(got.reshape(shape), expected)


# -- RT Dose -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_rt_dose_in_gray(tmp_path, dtype) -> None:
    grid = RNG.integers(0, 60000, (4, 6, 5)).astype(dtype)
    path = write_dose(tmp_path / "dose.dcm", grid, scaling=3.1e-5)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.DoseGridScaling)
    frames = dicom_dask.open_frames(path).transformed(dtype=np.float64)
    np.testing.assert_array_equal(np.asarray(frames.array), expected)
    volume = dicom_dask.open_volume(path)
    dosed = volume.transformed(dtype=np.float64)
    order = [frame for _, frame in volume.metadata["slice_files"]]
    np.testing.assert_array_equal(np.asarray(dosed.array), expected[order])
    assert dosed.metadata["transform"]["applied"][0]["slope_intercept"] == [3.1e-5, 0.0]
    # stored values when the modality transform is off
    stored = volume.transformed(apply_modality_transform=False, dtype=np.float64)
    np.testing.assert_array_equal(np.asarray(stored.array), ds.pixel_array[order])


# -- gantry tilt with a spacing that changes partway ---------------------------------------
def test_tilted_series_with_changing_spacing_under_positions(tmp_path) -> None:
    """7 mm then 4 mm along z, 10 degrees of gantry tilt: only ``positions`` opens it."""
    vol = RNG.integers(-1000, 2000, (7, 8, 6)).astype(np.int16)
    z = np.array([0.0, 7.0, 14.0, 21.0, 25.0, 29.0, 33.0])
    positions = np.c_[np.full(7, -100.0), -120.0 + z * np.tan(np.radians(10.0)), 30.0 + z]
    write_series(tmp_path, vol, positions=positions, shuffle=2)
    with pytest.raises(LayoutError, match=r"non-uniform spacing.*gantry tilt"):
        dicom_dask.open_volume(tmp_path)
    with pytest.raises(LayoutError, match="needs uniform spacing"):
        dicom_dask.open_volume(tmp_path, geometry="shear")
    volume = dicom_dask.open_volume(tmp_path, geometry="positions")
    order = np.arange(7)[::-1]  # slices run against the normal (+z): descending z
    for k, src in enumerate(order):  # pixels equal pydicom's, file by file
        ds = pydicom.dcmread(tmp_path / f"slice{_file_number(tmp_path, positions[src]):04d}.dcm")
        np.testing.assert_array_equal(np.asarray(volume.array[k]), ds.pixel_array)
    assert not volume.regular and volume.metadata["geometry"]["regular"] is False
    np.testing.assert_allclose(volume.positions, positions[order], atol=1e-5)
    # indices map to the real positions (not to a uniform grid) and back
    ijk = np.c_[np.arange(7), np.full(7, 2.0), np.full(7, 3.0)]
    xyz = volume.map_indices_to_reference(ijk)
    np.testing.assert_allclose(xyz, positions[order] + [3 * 0.75, 2 * 0.5, 0.0], atol=1e-5)
    np.testing.assert_allclose(volume.map_reference_to_indices(xyz), ijk, atol=1e-6)
    # halfway between two slices 7 mm apart
    np.testing.assert_allclose(
        volume.map_indices_to_reference([[4.5, 0, 0]])[0], positions[order[[4, 5]]].mean(axis=0)
    )
    # a sub-volume keeps its own real first slice
    np.testing.assert_allclose(volume[3:6].affine[:3, 3], positions[order[3]], atol=1e-5)
    coords = volume.to_xarray().coords["slice"].values
    np.testing.assert_allclose(coords, -(30.0 + z[order]))  # along the normal, as indices grow
    with pytest.raises(ValueError, match="not regularly spaced"):
        volume.permute_spatial_axes((2, 1, 0))


def _file_number(folder, position) -> int:
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if np.allclose([float(v) for v in ds.ImagePositionPatient], position, atol=1e-4):
            return int(path.stem[5:])
    raise AssertionError(f"no file at {position}")


# -- TILED_SPARSE frames on the same tile ---------------------------------------------------
def _drawn_in_frame_order(path) -> np.ndarray:
    """pydicom's frames pasted in frame order (later frames over earlier ones)."""
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    out = np.zeros(
        (ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns, *frames.shape[3:]), frames.dtype
    )
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pos = item.PlanePositionSlideSequence[0]
        r, c = (
            pos.RowPositionInTotalImagePixelMatrix - 1,
            pos.ColumnPositionInTotalImagePixelMatrix - 1,
        )
        part = out[r : r + ds.Rows, c : c + ds.Columns]
        part[...] = frames[k][: part.shape[0], : part.shape[1]]
    return out


@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.JPEGBaseline8Bit])
def test_overlapping_sparse_tiles_later_frames_drawn(tmp_path, syntax) -> None:
    matrix = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    overlay = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    ds = make_overlapping_sparse_slide(
        matrix, overlay, [(0, 0), (1, 2), (0, 0)], transfer_syntax=syntax
    )
    path = tmp_path / "sparse.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.warns(LayoutWarning, match=r"3 TILED_SPARSE frame\(s\).*frames \[1, 7, 9\]"):
        slide = dicom_dask.open_slide(path)
    got = np.asarray(slide.levels[0])
    if syntax == uid.ExplicitVRLittleEndian:  # exact: the composite of pydicom's frames
        expected = _drawn_in_frame_order(path)
        np.testing.assert_array_equal(got, expected)
        composite = matrix.copy()
        composite[32:64, 64:96] = overlay[32:64, 64:96]
        composite[0:32, 0:32] = overlay[0:32, 0:32]
        np.testing.assert_array_equal(got, composite)
    openslide = pytest.importorskip("openslide")
    reference = openslide.OpenSlide(str(path))
    region = np.asarray(reference.read_region((0, 0), 0, (96, 64)))[..., :3]
    np.testing.assert_array_equal(got, region)  # OpenSlide draws the same tiles


# -- pyramid levels with their own Frame of Reference ----------------------------------------
def _rgb_matrix(rows: int, cols: int) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    return np.stack([(xx // 3) % 256, (yy // 2) % 256, ((xx + yy) // 5) % 256], -1).astype(np.uint8)


def test_pyramid_with_one_frame_of_reference_per_level(tmp_path) -> None:
    matrix = _rgb_matrix(300, 420)
    paths = write_pyramid_per_level_for(
        tmp_path, matrix, levels=4, tile=(64, 64), transfer_syntax=uid.ExplicitVRLittleEndian
    )
    uids = {str(pydicom.dcmread(p, stop_before_pixels=True).FrameOfReferenceUID) for p in paths}
    assert len(uids) == 4
    with pytest.warns(LayoutWarning, match=r"4 pyramid levels with 4 different Frame of Ref"):
        slide = dicom_dask.open_slide(tmp_path)
    assert len(slide.pyramid) == 4
    for k, level in enumerate(slide.levels):  # every level, pixels as written
        np.testing.assert_array_equal(np.asarray(level), matrix[:: 2**k, :: 2**k])
    with pytest.warns(LayoutWarning):
        (listed,) = dicom_dask.list_slides(tmp_path)
    assert sorted(listed["merged_frames_of_reference"]) == sorted(uids)
    assert sorted(listed["frame_of_reference_uids"]) == sorted(uids)
    assert {i["frame_of_reference_uid"] for i in listed["instances"]} == uids
    assert listed["differs_by"] == {}  # a single slide: nothing sets it apart
    openslide = pytest.importorskip("openslide")
    reference = openslide.OpenSlide(paths[0])  # OpenSlide groups by series: 4 levels too
    assert reference.level_dimensions == tuple(slide.dimensions)


def test_slides_that_really_differ_are_kept_apart_and_named(tmp_path) -> None:
    matrix = _rgb_matrix(128, 160)
    series = uid.generate_uid()
    common = {"tile": (64, 64), "transfer_syntax": uid.ExplicitVRLittleEndian}
    # same series and container, own Frames of Reference, but 5 mm apart on the glass
    write_slide(tmp_path / "a.dcm", matrix, origin=(20.0, 40.0), series_uid=series, **common)
    write_slide(tmp_path / "b.dcm", matrix[::2, ::2], origin=(25.0, 40.0), pixel_spacing=0.0005,
                series_uid=series, **common)  # fmt: skip
    listed = dicom_dask.list_slides(tmp_path)
    assert len(listed) == 2
    assert all("frame_of_reference_uid" in d["differs_by"] for d in listed)
    assert "series_instance_uid" not in listed[0]["differs_by"]
    assert any("origins" in reason for d in listed for reason in d["kept_apart_because"])
    with pytest.raises(
        NoImagesError, match=r"holds 2 slides \(they differ in Frame of Reference UID .*origins"
    ):
        dicom_dask.open_slide(tmp_path)
    slide = dicom_dask.open_slide(tmp_path, select=listed[1]["frame_of_reference_uid"])
    assert len(slide.pyramid) == 1
    # another series on the same glass: the message names the series
    write_slide(tmp_path / "c.dcm", matrix, container_id="SLIDE-2", **common)
    with pytest.raises(NoImagesError, match=r"Container Identifier \(SLIDE-1 \| SLIDE-2\)"):
        dicom_dask.open_slide(tmp_path)


# -- several volumes at the same slice positions ----------------------------------------------
def _slice_of(volume, position) -> int:
    distance = np.linalg.norm(volume.positions - np.asarray(position), axis=1)
    assert distance.min() < 1e-4, f"no slice at {position}"
    return int(distance.argmin())


def _assert_files_equal_pydicom(volume, records, channel) -> None:
    """Every file's pydicom pixel_array is the volume's slice at its position and channel."""
    array = np.asarray(volume.array)
    seen = set()
    for rec in records:
        key = (_slice_of(volume, rec["position"]), *channel(rec))
        seen.add(key)
        expected = pydicom.dcmread(rec["path"]).pixel_array
        np.testing.assert_array_equal(array[key[0], :, :, *key[1:]], expected, err_msg=rec["path"])
    assert len(seen) == len(records)  # no two files on the same element


@pytest.mark.parametrize("vendor", ["GE", "SIEMENS", "PHILIPS"])
def test_dwi_series_with_private_diffusion_tags(tmp_path, vendor: str) -> None:
    data = RNG.integers(0, 3000, (5, 4, 6, 5)).astype(np.int16)
    b_values = [0, 1000, 1000, 1000, 0]
    directions = [(0, 0, 0), (1, 0, 0), (0, 0.6, 0.8), (0, 0, 1), (0, 0, 0)]
    records = write_dwi_series(
        tmp_path, data, b_values=b_values, directions=directions, vendor=vendor
    )
    (listed,) = dicom_dask.list_series(tmp_path)
    assert listed["channels"] == {"gradient": (0, 1, 2, 3, 4)}
    volume = dicom_dask.open_volume(tmp_path)
    assert volume.shape == (4, 6, 5, 5)
    assert volume.channels == {"gradient": (0, 1, 2, 3, 4)}
    coords = volume.metadata["coordinates"]
    assert coords["b_value"] == {"dimension": "gradient", "values": [0, 1000, 1000, 1000, 0]}
    np.testing.assert_allclose(coords["gradient_direction"]["values"], directions, atol=1e-6)
    _assert_files_equal_pydicom(volume, records, lambda rec: (rec["volume"],))
    volume.save_index(tmp_path / "index.json")  # the private tags travel in the index
    again = dicom_dask.open_volume(index=tmp_path / "index.json")
    assert again.channels == volume.channels and again.metadata["coordinates"] == coords
    xr = pytest.importorskip("xarray")
    array = volume.to_xarray()
    assert isinstance(array, xr.DataArray)
    assert array.dims == ("slice", "row", "column", "gradient")
    np.testing.assert_array_equal(array.coords["b_value"].values, b_values)
    for axis, suffix in enumerate("xyz"):
        values = array.coords[f"gradient_direction_{suffix}"].values
        np.testing.assert_allclose(values, np.asarray(directions)[:, axis])


def test_fmri_series_with_only_acquisition_times(tmp_path) -> None:
    data = RNG.integers(0, 4000, (6, 5, 4, 3)).astype(np.int16)
    records = write_fmri_series(tmp_path, data, instance_numbers=True)
    volume = dicom_dask.open_volume(tmp_path)
    assert volume.shape == (5, 4, 3, 6)
    assert volume.channels == {"temporal_position": tuple(range(6))}
    times = volume.metadata["coordinates"]["acquisition_time"]["values"]
    first = [min(r["time"] for r in records if r["volume"] == v) for v in range(6)]
    np.testing.assert_allclose(times, first)  # volumes in time order, each at its first slice
    _assert_files_equal_pydicom(volume, records, lambda rec: (rec["volume"],))
    assert "b_value" not in volume.metadata["coordinates"]


def test_magnitude_and_phase_in_one_series(tmp_path) -> None:
    magnitude = RNG.integers(0, 4000, (4, 6, 5)).astype(np.int16)
    phase = RNG.integers(-4096, 4096, (4, 6, 5)).astype(np.int16)
    records = write_magnitude_phase_series(tmp_path, magnitude, phase)
    volume = dicom_dask.open_volume(tmp_path)
    assert volume.shape == (4, 6, 5, 2)
    assert volume.channels == {"image_type": ("MAGNITUDE", "PHASE")}
    names = {"M": 0, "P": 1}
    _assert_files_equal_pydicom(volume, records, lambda rec: (names[rec["image_type"]],))


def test_enhanced_dti_file(tmp_path) -> None:
    data = RNG.integers(0, 3000, (4, 3, 6, 5)).astype(np.int16)
    b_values = [0, 800, 800, 800]
    directions = [None, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    ds = make_enhanced_dti_dataset(data, b_values=b_values, directions=directions)
    path = tmp_path / "dti.dcm"
    ds.save_as(path, enforce_file_format=True)
    volume = dicom_dask.open_volume(path)
    assert volume.shape == (3, 6, 5, 4)
    assert volume.channels == {"gradient": (0, 1, 2, 3)}
    coords = volume.metadata["coordinates"]
    assert coords["b_value"]["values"] == b_values
    gradients = np.asarray(coords["gradient_direction"]["values"])
    assert np.isnan(gradients[0]).all()  # the isotropic b=0 frame has no direction
    np.testing.assert_allclose(gradients[1:], directions[1:])
    frames = pydicom.dcmread(path).pixel_array  # frames slice by slice, volumes within
    array = np.asarray(volume.array)
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = item.PlanePositionSequence[0].ImagePositionPatient
        k, v = divmod(f, 4)
        np.testing.assert_array_equal(array[_slice_of(volume, position), :, :, v], frames[f])
        np.testing.assert_array_equal(frames[f], data[v, k])


def test_irregular_repeats_become_stacks(tmp_path) -> None:
    """A volume cut short (the scan stopped): each volume is a stack to select."""
    data = RNG.integers(0, 4000, (3, 4, 5, 4)).astype(np.int16)
    records = write_fmri_series(tmp_path, data)
    (tmp_path / records[-1]["path"]).unlink()  # the last volume lacks its last slice
    listed = dicom_dask.list_series(tmp_path)
    assert [d["stack"] for d in listed] == [f"temporal_position={v}" for v in range(3)]
    assert [d["shape"][0] for d in listed] == [4, 4, 3]
    with pytest.raises(NoImagesError, match=r"holds 3 stacks \(they differ in stack .*shape"):
        dicom_dask.open_volume(tmp_path)
    second = dicom_dask.open_volume(tmp_path, select="temporal_position=1")
    _assert_files_equal_pydicom(second, [r for r in records if r["volume"] == 1], lambda r: ())
    assert second.shape == (4, 5, 4)


def test_front_ends_tell_slides_from_volumes(tmp_path) -> None:
    """What the front ends ask before choosing open_slide or open_volume."""
    from dicom_dask.images.sources import classify_source

    write_pyramid_per_level_for(
        tmp_path / "slide", _rgb_matrix(64, 64), levels=2, tile=(32, 32),
        transfer_syntax=uid.ExplicitVRLittleEndian,
    )  # fmt: skip
    write_series(tmp_path / "ct", RNG.integers(0, 100, (3, 4, 4)).astype(np.int16))
    assert classify_source(tmp_path / "slide")[0] == "slides"
    assert classify_source(tmp_path / "slide" / "level0.dcm")[0] == "slide"
    assert classify_source(tmp_path / "ct")[0] == "series"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not DICOM")
    with pytest.raises(NoImagesError, match="no DICOM image"):
        classify_source(tmp_path / "empty")


# -- real files --------------------------------------------------------------------------------
DATA = Path(__file__).resolve().parents[1] / "data"


def test_real_ge_dwi_series_from_dcm_qa_ge() -> None:
    """dcm2niix's GE test series: the volumes, b-values and directions dcm2niix finds."""
    folder = DATA / "dcm_qa_ge_dwi"
    files = sorted(folder.glob("i*.MRDC.*"))
    volume = dicom_dask.open_volume(folder)
    assert volume.shape == (2, 256, 256, 7)
    assert volume.channels == {"gradient": tuple(range(7))}
    bval = np.loadtxt(folder / "dcm2niix.bval")
    coords = volume.metadata["coordinates"]
    np.testing.assert_array_equal(coords["b_value"]["values"], bval)  # dcm2niix's order too
    array = np.asarray(volume.array)
    by_direction = {}
    for path in files:  # each file is one slice of one volume, as pydicom reads it
        ds = pydicom.dcmread(path)
        g = tuple(float(ds[t].value) for t in (0x001910BB, 0x001910BC, 0x001910BD))
        b = float(ds[0x00431039].value[0]) % 1e9
        matches = [
            v
            for v in range(7)
            if coords["b_value"]["values"][v] == b
            and np.allclose(coords["gradient_direction"]["values"][v], g, atol=1e-6)
        ]
        assert len(matches) == 1, path
        position = [float(x) for x in ds.ImagePositionPatient]
        s = _slice_of(volume, position)
        np.testing.assert_array_equal(array[s, :, :, matches[0]], ds.pixel_array)
        by_direction.setdefault(matches[0], set()).add(s)
    assert all(slices == {0, 1} for slices in by_direction.values())
    # the same unit directions as dcm2niix's bvec (which it gives in image axes)
    bvec = np.loadtxt(folder / "dcm2niix.bvec").T
    ours = np.asarray(coords["gradient_direction"]["values"])
    np.testing.assert_allclose(
        np.linalg.norm(ours, axis=1), np.linalg.norm(bvec, axis=1), atol=1e-5
    )


def test_real_philips_enhanced_magnitude_and_real_field_map() -> None:
    """dcm2niix's Philips enhanced field map: magnitude and real frames at one set of positions."""
    path = DATA / "dcm_qa_enh_philips_fmap" / "IM_0027_fMAP.dcm"
    volume = dicom_dask.open_volume(path)
    assert volume.shape == (32, 64, 64, 2)
    assert volume.channels == {"image_type": ("MAGNITUDE", "REAL")}
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    array = np.asarray(volume.array)
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = item.PlanePositionSequence[0].ImagePositionPatient
        component = item.MRImageFrameTypeSequence[0].ComplexImageComponent
        c = volume.channels["image_type"].index(component)
        np.testing.assert_array_equal(array[_slice_of(volume, position), :, :, c], frames[k])


def test_a_copied_file_is_not_another_volume(tmp_path) -> None:
    import shutil

    vol = RNG.integers(0, 100, (4, 5, 6)).astype(np.int16)
    paths = write_series(tmp_path, vol)
    shutil.copy(paths[1], tmp_path / "copy-of-slice1.dcm")
    with pytest.warns(LayoutWarning, match=r"1 file\(s\) repeat an instance already read"):
        volume = dicom_dask.open_volume(tmp_path)
    assert volume.shape == (4, 5, 6) and volume.channels == {}
    np.testing.assert_array_equal(np.asarray(volume.array), vol[::-1])


def test_real_ge_dwi_through_xarray_and_index(tmp_path) -> None:
    """GE's (0043,1080) holds text in a DS: the header still goes to JSON (index, xarray)."""
    xr = pytest.importorskip("xarray")
    folder = DATA / "dcm_qa_ge_dwi"
    volume = dicom_dask.open_volume(folder)
    volume.save_index(tmp_path / "ge.json")
    again = dicom_dask.open_volume(index=tmp_path / "ge.json")
    assert again.metadata["coordinates"] == volume.metadata["coordinates"]
    np.testing.assert_array_equal(np.asarray(again.array), np.asarray(volume.array))
    dataset = xr.open_dataset(folder, engine="dicom")
    assert dict(dataset.sizes) == {"slice": 2, "row": 256, "column": 256, "gradient": 7}
    np.testing.assert_array_equal(dataset["b_value"].values, np.loadtxt(folder / "dcm2niix.bval"))


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(0.5, 9.0), min_size=1, max_size=8),
    shear=st.tuples(st.floats(-0.4, 0.4), st.floats(-0.4, 0.4)),
    order=st.randoms(use_true_random=False),
)
def test_positions_policy_keeps_any_parallel_stack(gaps, shear, order) -> None:
    """Property: any parallel stack opens under ``positions``; slice k maps to its real
    position, and coordinates map back to their indices."""
    from dicom_dask.images.geometry import stack_geometry
    from dicom_dask.images.volume import Volume

    orientation = (0.8660254, 0.5, 0.0, -0.1294095, 0.2241439, -0.9659258)
    o = np.asarray(orientation)
    normal = np.cross(o[:3], o[3:])
    distance = np.concatenate([[0.0], np.cumsum(gaps)])
    positions = (
        np.array([10.0, -20.0, 5.0])
        + distance[:, None] * normal
        + distance[:, None] * (shear[0] * o[:3] + shear[1] * o[3:])
    )
    shuffled = list(range(len(positions)))
    order.shuffle(shuffled)
    geometry = stack_geometry(positions[shuffled], orientation, (0.7, 0.9), policy="positions")
    volume = Volume(
        array=np.zeros((len(geometry.order), 3, 4)),
        affine=geometry.affine,
        positions=geometry.positions,
        metadata={"geometry": geometry.to_dict()},
    )
    ijk = np.c_[
        np.arange(len(geometry.order)),
        np.full(len(geometry.order), 1.0),
        np.full(len(geometry.order), 2.0),
    ]
    expected = np.where(
        np.isnan(geometry.positions),
        np.nan,
        geometry.positions + 1.0 * 0.7 * o[3:] + 2.0 * 0.9 * o[:3],
    )
    present = ~np.isnan(geometry.positions[:, 0])
    xyz = volume.map_indices_to_reference(ijk)
    # exact when not regular; a regular affine holds every slice to 1 % of the spacing
    atol = 1e-6 if not volume.regular else 0.01 * geometry.spacing + 1e-9
    np.testing.assert_allclose(xyz[present], expected[present], atol=atol, rtol=0)
    back = volume.map_reference_to_indices(xyz[present])
    np.testing.assert_allclose(back, ijk[present], atol=1e-6)
    # slices run against the normal, each at a real input position
    real = geometry.positions[present]
    assert all(np.isclose(np.linalg.norm(positions - p, axis=1), 0, atol=1e-9).any() for p in real)
    assert np.all(np.diff(real @ normal) < 0)
