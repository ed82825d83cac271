"""Pixel transforms: real files and synthetic fixtures against highdicom, laziness, clusters."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.dataset import Dataset

import dicom_dask
from dicom_dask.images.transforms import TransformError
from dicom_dask.testing import make_dataset, make_enhanced_dataset, series_positions, write_series
from tests.conftest import REAL, REFERENCE

hd = pytest.importorskip("highdicom")
RNG = np.random.default_rng(21)


def _highdicom_frames(path, **switches) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = hd.imread(path)
        return np.asarray(image.get_frames(dtype=np.float32, **switches))


# highdicom reads this signed 12-bit file's stored values without sign extension (-1 as
# 4095) before its Modality LUT; pydicom's pixel_array (and dicom_dask) sign-extend
SIGN_EXTENDED = {"misc/mlut_18.dcm"}


@pytest.mark.parametrize("path", sorted(e["path"] for e in REFERENCE["files"]))
def test_real_files_equal_highdicom_default_chain(real_dir, path: str) -> None:
    if path in SIGN_EXTENDED:
        from pydicom.pixels import apply_modality_lut

        ds = pydicom.dcmread(REAL / path)
        expected = apply_modality_lut(ds.pixel_array, ds)
        got = dicom_dask.open_frames(REAL / path, backend="pydicom").transformed().array
        np.testing.assert_allclose(got.compute().reshape(expected.shape), expected)
        return
    try:
        expected = _highdicom_frames(REAL / path)
    except Exception as exc:  # highdicom cannot read or transform this file
        # ours still builds a transform (from the header) or says clearly why not
        try:
            frames = dicom_dask.open_frames(REAL / path, backend="pydicom").transformed()
        except (TransformError, dicom_dask.errors.DicomDaskError) as ours:
            assert str(REAL) in str(ours) or "frame" in str(ours)
        else:
            assert frames.array.dtype == np.float32
        pytest.skip(f"highdicom: {type(exc).__name__}: {str(exc)[:80]}")
    header = pydicom.dcmread(REAL / path, stop_before_pixels=True)
    if header.get("Modality") == "RTDOSE" and "DoseGridScaling" in header:
        # highdicom does not know Dose Grid Scaling; dicom_dask applies it (in Gy)
        expected = expected * np.float32(header.DoseGridScaling)
    frames = dicom_dask.open_frames(REAL / path, backend="pydicom").transformed()
    got = frames.array.compute()
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_real_volume_and_slide_transformed(real_dir) -> None:
    volume = dicom_dask.open_volume(REAL / "volume_series/ct_3slice", backend="pydicom")
    hu = volume.transformed().array.compute()
    datasets = [pydicom.dcmread(p) for p in sorted((REAL / "volume_series/ct_3slice").iterdir())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = hd.get_volume_from_series(datasets, dtype=np.float32).array
    np.testing.assert_allclose(hu, expected, rtol=1e-5)
    assert hu.min() < -1000  # Hounsfield units, not stored values
    slide = dicom_dask.open_slide(REAL / "wsi/cmu1_napari", backend="pydicom").transformed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = hd.imread(REAL / "wsi/cmu1_napari/volume.dcm")
        region = image.get_total_pixel_matrix(
            row_start=100,
            row_end=400,
            column_start=50,
            column_end=300,
            as_indices=True,
            dtype=np.float32,
        )
    np.testing.assert_allclose(slide.read_region((50, 100), 0, (250, 300)), region, rtol=1e-5)
    np.testing.assert_allclose(slide.levels[0][100:400, 50:300].compute(), region, rtol=1e-5)
    assert slide.pyramid[0].transform.applied[0]["icc_profile"]


def _write(tmp_path, ds: Dataset, name: str) -> str:
    path = str(tmp_path / name)
    ds.save_as(path, enforce_file_format=True)
    return path


def _compare(path: str, **switches) -> np.ndarray:
    got = dicom_dask.open_frames(path, backend="pydicom").transformed(**switches).array.compute()
    np.testing.assert_allclose(got, _highdicom_frames(path, **switches), rtol=1e-5, atol=1e-6)
    return got


def test_per_frame_rescale_reaches_its_frames(tmp_path) -> None:
    frames = RNG.integers(0, 1000, (4, 8, 8)).astype(np.uint16)
    ds = make_enhanced_dataset(frames, positions=series_positions(4, slice_spacing=2.0))
    slopes, intercepts = [1.0, 2.0, 0.5, 3.0], [-1024.0, 0.0, 10.0, -5.0]
    for item, slope, intercept in zip(
        ds.PerFrameFunctionalGroupsSequence, slopes, intercepts, strict=True
    ):
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = slope, intercept, "US"
        item.PixelValueTransformationSequence = [pvt]
    path = _write(tmp_path, ds, "per-frame.dcm")
    got = _compare(path)
    expected = frames * np.array(slopes)[:, None, None] + np.array(intercepts)[:, None, None]
    np.testing.assert_allclose(got, expected)
    volume = dicom_dask.open_volume(path).transformed()
    # slices run against the normal: frame 3 is slice 0
    np.testing.assert_allclose(volume.array.compute(), expected[::-1])
    applied = volume.metadata["transform"]["applied"]
    assert applied and volume.metadata["transform"]["options"]["dtype"] == "float32"


def _ct(**extra) -> Dataset:
    frames = RNG.integers(0, 4000, (2, 16, 16)).astype(np.uint16)
    ds = make_dataset(frames)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.CTImageStorage
    ds.Modality = "CT"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def test_voi_windows_by_index_and_explanation(tmp_path) -> None:
    ds = _ct(
        RescaleSlope=1.0,
        RescaleIntercept=-1024.0,
        WindowCenter=[40.0, 400.0],
        WindowWidth=[400.0, 2000.0],
        WindowCenterWidthExplanation=["SOFT", "BONE"],
    )
    path = _write(tmp_path, ds, "voi.dcm")
    first = _compare(path, apply_voi_transform=True)
    by_index = _compare(path, apply_voi_transform=True, voi_transform_selector=1)
    by_name = _compare(path, apply_voi_transform=True, voi_transform_selector="BONE")
    np.testing.assert_array_equal(by_index, by_name)
    assert not np.array_equal(first, by_index)
    assert first.min() >= 0.0
    assert first.max() <= 1.0
    ranged = _compare(path, apply_voi_transform=True, voi_output_range=(-1.0, 255.0))
    assert ranged.max() > 1.0


def test_a_missing_voi_window_lists_the_windows_there_are(tmp_path) -> None:
    ds = _ct(
        WindowCenter=[40.0, -600.0],
        WindowWidth=[400.0, 1500.0],
        WindowCenterWidthExplanation=["SOFT", "LUNG"],
    )
    path = _write(tmp_path, ds, "voi.dcm")
    frames = dicom_dask.open_frames(path)
    with pytest.raises(TransformError) as caught:
        frames.transformed(apply_voi_transform=True, voi_transform_selector="BONE")
    message = str(caught.value)
    assert "voi_transform_selector='BONE'" in message and path in message
    assert "[0] window 'SOFT': center 40, width 400" in message
    assert "[1] window 'LUNG': center -600, width 1500" in message
    with pytest.raises(TransformError, match=r"\[1\] window 'LUNG'"):
        frames.transformed(apply_voi_transform=None, voi_transform_selector=2)
    bare = _write(tmp_path, _ct(), "bare.dcm")
    with pytest.raises(TransformError, match="the image has no VOI window or VOI LUT"):
        dicom_dask.open_frames(bare).transformed(apply_voi_transform=True)


def test_modality_lut(tmp_path) -> None:
    ds = _ct()
    ds.BitsStored = 12
    ds.HighBit = 11
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = (np.arange(4096) * 2 + 7).astype(np.uint16).tolist()
    item["LUTData"].VR = "US"
    ds.ModalityLUTSequence = [item]
    path = _write(tmp_path, ds, "mlut.dcm")
    got = _compare(path)
    stored = dicom_dask.open_frames(path).array.compute()
    np.testing.assert_allclose(got, stored * 2 + 7)


def test_sixteen_bit_palette(tmp_path) -> None:
    frames = RNG.integers(0, 256, (2, 12, 12)).astype(np.uint8)
    ds = make_dataset(frames, photometric_interpretation="PALETTE COLOR")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    for color, scale in (("Red", 257), ("Green", 128), ("Blue", 60)):
        setattr(ds, f"{color}PaletteColorLookupTableDescriptor", [256, 0, 16])
        data = (np.arange(256, dtype=np.uint32) * scale % 65536).astype("<u2").tobytes()
        setattr(ds, f"{color}PaletteColorLookupTableData", data)
        ds[f"{color}PaletteColorLookupTableData"].VR = "OW"
    path = _write(tmp_path, ds, "palette.dcm")
    got = _compare(path)
    assert got.shape == (2, 12, 12, 3)
    frames_obj = dicom_dask.open_frames(path).transformed()
    assert frames_obj.array.shape == (2, 12, 12, 3)  # declared before computing
    assert frames_obj.array.dtype == np.float32


def test_monochrome1_is_inverted(tmp_path) -> None:
    frames = RNG.integers(0, 1024, (2, 10, 10)).astype(np.uint16)
    ds = make_dataset(frames, photometric_interpretation="MONOCHROME1")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    ds.BitsStored, ds.HighBit = 10, 9
    path = _write(tmp_path, ds, "mono1.dcm")
    got = _compare(path)
    off = dicom_dask.open_frames(path).transformed(apply_presentation_lut=False).array.compute()
    assert np.corrcoef(got.ravel(), off.ravel())[0, 1] < -0.99


def test_icc_profile_and_required_switch(tmp_path) -> None:
    from PIL import ImageCms

    rgb = RNG.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    ds = make_dataset(rgb)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    path_plain = _write(tmp_path, ds.copy(), "rgb.dcm")
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    ds.ICCProfile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = _write(tmp_path, ds, "icc.dcm")
    got = _compare(path)
    assert got.shape == rgb.shape
    assert len(profile) > 0
    with pytest.raises(TransformError, match="cannot build the pixel transform"):
        dicom_dask.open_frames(path_plain).transformed(apply_icc_profile=True)
    with pytest.raises(TransformError):
        dicom_dask.open_frames(path_plain).transformed(apply_voi_transform=True)


def test_building_the_transformed_array_reads_no_pixels(tmp_path, monkeypatch) -> None:
    from dicom_dask.chunks.reader import ManifestArray

    vol = RNG.integers(0, 4000, (6, 16, 16)).astype(np.int16)
    write_series(tmp_path, vol, extra=[{"RescaleIntercept": -1024.0, "RescaleSlope": 1.0}] * 6)
    reads: list[object] = []
    original = ManifestArray.read

    def counting(self, key, out=None):
        got = original(self, key, out)
        if got.size:
            reads.append(key)
        return got

    monkeypatch.setattr(ManifestArray, "read", counting)
    volume = dicom_dask.open_volume(tmp_path)
    hu = volume.transformed()
    arr = hu.array[1:3].sum()
    assert reads == []
    np.testing.assert_allclose(arr.compute(), (vol[::-1][1:3].astype(np.float64) - 1024).sum())
    assert reads


def test_fused_volume_transform_equals_block_transform(tmp_path) -> None:
    """An opened volume is read and transformed slab by slab; the result equals the
    block-wise transform of its stored array, per-file parameters and gaps included."""
    from dataclasses import replace

    vol = RNG.integers(0, 4000, (40, 24, 20)).astype(np.int16)
    extra = [
        {"RescaleIntercept": -1024.0 + i, "RescaleSlope": 1.0 + (i % 3) / 2} for i in range(40)
    ]
    write_series(tmp_path, vol, extra=extra, transfer_syntax=uid.RLELossless)
    volume = dicom_dask.open_volume(tmp_path, chunk_bytes=24 * 20 * 2 * 7)  # 7-slice chunks
    fused = volume.transformed()
    assert fused.array.name.startswith("dicom-volume-transformed-")
    plain = replace(volume, array=volume.array.map_blocks(lambda b: b)).transformed()
    assert not plain.array.name.startswith("dicom-volume-transformed-")
    np.testing.assert_array_equal(fused.array.compute(), plain.array.compute())
    np.testing.assert_array_equal(
        fused.array[3:17, 5:9].compute(), plain.array[3:17, 5:9].compute()
    )


@pytest.mark.parametrize(
    ("stored", "bits_stored", "slope", "intercept", "dtype"),
    [
        (np.int16, 12, 1.0, -1024.0, np.int16),  # CT in Hounsfield units, same bytes
        (np.uint16, 12, 1.0, -1024.0, np.int16),  # unsigned stored, signed output
        (np.uint16, 16, 3.0, -70000.0, np.int32),  # wider output, slope and intercept
        (np.uint8, 8, 2.0, 5.0, np.uint16),
    ],
)
def test_integer_output_equals_highdicom(tmp_path, stored, bits_stored, slope, intercept, dtype):
    info = np.iinfo(stored)
    low = max(info.min, -(2 ** (bits_stored - 1)) if info.min < 0 else 0)
    high = min(info.max, 2 ** (bits_stored - (1 if info.min < 0 else 0)) - 1)
    frames = RNG.integers(low, high, (3, 12, 10), endpoint=True).astype(stored)
    frames[0, 0, :2] = low, high  # both ends of the stored range
    ds = make_dataset(frames)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.CTImageStorage
    ds.Modality, ds.BitsStored, ds.HighBit = "CT", bits_stored, bits_stored - 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
    path = _write(tmp_path, ds, "int.dcm")
    frames_out = dicom_dask.open_frames(path).transformed(dtype=dtype)
    assert type(frames_out.transform.get(0, 0)).__name__ == "_Rescale"  # the fast path
    got = frames_out.array.compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.asarray(hd.imread(path).get_frames(dtype=dtype))
    assert got.dtype == expected.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, frames.astype(np.int64) * int(slope) + int(intercept))
    # an output highdicom refuses (values that do not fit) is refused when building
    with pytest.raises(TransformError, match="capacity"):
        dicom_dask.open_frames(path).transformed(dtype=np.int8)


def test_transformed_volume_compute_reads_directly(tmp_path, monkeypatch) -> None:
    """``transformed().compute()`` of a local opened volume fills one array in threads,
    equal to the dask graph's result (as does ``.array.compute()``, and a slice's)."""
    import dask.base

    vol = RNG.integers(0, 4000, (23, 16, 12)).astype(np.int16)
    extra = [{"RescaleIntercept": -1024.0 + i, "RescaleSlope": 1.0 + (i % 2)} for i in range(23)]
    write_series(tmp_path, vol, extra=extra)
    volume = dicom_dask.open_volume(tmp_path).transformed()
    expected = dask.base.compute(volume.array)[0]  # through the graph
    monkeypatch.setattr(dask.base, "compute", lambda *a, **k: pytest.fail("went through dask"))
    with pytest.raises(pytest.fail.Exception):
        dask.base.compute(volume.array)  # the guard works
    np.testing.assert_array_equal(volume.array.compute(), expected)
    got = volume.compute()
    assert got.array.dtype == np.float32
    np.testing.assert_array_equal(got.array, expected)
    monkeypatch.undo()
    np.testing.assert_array_equal(volume[2:9].compute().array, expected[2:9])
    assert volume.reader.is_local()
