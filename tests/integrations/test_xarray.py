"""The xarray backend (engine="dicom"): lazy arrays, CF decoding, coordinates, options."""

from __future__ import annotations

import numpy as np
import pytest

import dicom_dask
from dicom_dask.frames.deidentify import pseudonym_uid
from dicom_dask.testing import series_positions, write_series
from tests.conftest import REAL

xr = pytest.importorskip("xarray")


def _ct_series(folder, *, slopes=None, n=6, gap=False):
    """A CT series whose rescale differs from identity (intercept -1024, slope 1 or 2)."""
    rng = np.random.default_rng(5)
    stored = rng.integers(0, 3000, (n, 16, 20)).astype(np.int16)
    slopes = slopes or [1.0] * n
    extra = [
        {
            "RescaleSlope": s,
            "RescaleIntercept": -1024.0,
            "RescaleType": "HU",
            "WindowCenter": 40,
            "WindowWidth": 400,
        }
        for s in slopes
    ]
    positions = series_positions(n, slice_spacing=2.0)
    if gap:  # one slice missing: only geometry="positions" opens it
        keep = [i for i in range(n) if i != 2]
        stored, positions, extra = stored[keep], positions[keep], [extra[i] for i in keep]
    write_series(
        folder, stored, positions=positions, pixel_spacing=(0.5, 0.5), extra=extra, shuffle=1
    )
    # stored values in the volume's slice order (sorted along the normal, as highdicom)
    return dicom_dask.open_volume(folder, geometry="positions").array.compute()


def test_entry_point_is_registered() -> None:
    assert "dicom" in xr.backends.list_engines()


def test_ct_decodes_to_hounsfield_units_by_default(tmp_path) -> None:
    stored = _ct_series(tmp_path / "ct")
    ds = xr.open_dataset(tmp_path / "ct", engine="dicom")
    image = ds["image"]
    assert image.name == "image" and image.dtype == np.float32
    assert not image.variable._in_memory  # lazily indexed: nothing read yet
    np.testing.assert_array_equal(image.values, stored.astype(np.float32) - 1024)
    assert image.attrs["units"] == "HU"
    assert image.encoding["scale_factor"] == 1.0 and image.encoding["add_offset"] == -1024.0
    # 16 bits stored: every int16 may occur, so the packed type is int32, whose minimum
    # is the _FillValue xarray wants for NaN
    # (12 bits stored stay int16: tests/frames/test_privacy.py)
    assert image.encoding["dtype"] == np.int32
    assert image.encoding["_FillValue"] == np.iinfo(np.int32).min
    # stored values with the CF attributes; xarray's own decode_cf gives the same HU
    raw = xr.open_dataset(tmp_path / "ct", engine="dicom", mask_and_scale=False)["image"]
    assert raw.dtype == np.int16
    np.testing.assert_array_equal(raw.values, stored)
    assert (raw.attrs["scale_factor"], raw.attrs["add_offset"]) == (1.0, -1024.0)
    decoded = xr.decode_cf(raw.to_dataset())["image"]
    np.testing.assert_array_equal(decoded.values, image.values)
    off = xr.open_dataset(tmp_path / "ct", engine="dicom", decode_cf=False)["image"]
    assert off.dtype == np.int16
    tree = xr.open_datatree(tmp_path / "ct", engine="dicom", mask_and_scale=False)
    np.testing.assert_array_equal(tree["image"].values, stored)


def test_coordinates_have_units_and_names(tmp_path) -> None:
    _ct_series(tmp_path / "ct")
    image = xr.open_dataset(tmp_path / "ct", engine="dicom")["image"]
    for name in ("slice", "row", "column", "position_x", "position_y", "position_z"):
        assert image[name].attrs["units"] == "mm", name
        assert image[name].attrs["long_name"], name
    np.testing.assert_allclose(np.diff(image["slice"].values), 2.0)
    assert "units" not in image.attrs or image.attrs["units"] == "HU"


def test_per_slice_rescale_becomes_coordinates(tmp_path) -> None:
    slopes = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    _ct_series(tmp_path / "ct", slopes=slopes)
    volume = dicom_dask.open_volume(tmp_path / "ct")
    image = xr.open_dataset(tmp_path / "ct", engine="dicom")["image"]
    np.testing.assert_array_equal(image.values, volume.transformed().array.compute())
    assert "scale_factor" not in image.encoding
    raw = xr.open_dataset(tmp_path / "ct", engine="dicom", mask_and_scale=False)["image"]
    expected = (
        raw.values * raw["rescale_slope"].values[:, None, None]
        + raw["rescale_intercept"].values[:, None, None]
    )
    np.testing.assert_array_equal(image.values, expected.astype(np.float32))


def test_volume_options_are_accepted(tmp_path) -> None:
    _ct_series(tmp_path / "gap", gap=True)
    with pytest.raises(dicom_dask.errors.DicomDaskError):
        xr.open_dataset(tmp_path / "gap", engine="dicom")
    ds = xr.open_dataset(tmp_path / "gap", engine="dicom", geometry="positions")
    image = ds["image"]
    volume = dicom_dask.open_volume(tmp_path / "gap", geometry="positions")
    [missing] = np.flatnonzero(volume.missing_slices)
    assert image.shape[0] == 6
    assert np.isnan(image.values[missing]).all()  # the missing slice: NaN, not -1024 HU
    assert not np.isnan(np.delete(image.values, missing, axis=0)).any()
    assert "scale_factor" not in image.encoding  # NaN cannot be packed into int16
    raw = xr.open_dataset(
        tmp_path / "gap", engine="dicom", geometry="positions", mask_and_scale=False, fill_value=7
    )["image"]
    assert (raw.values[missing] == 7).all()
    volume.save_index(tmp_path / "series.json")
    again = xr.open_dataset(
        tmp_path / "gap", engine="dicom", index=tmp_path / "series.json", geometry="positions"
    )
    np.testing.assert_array_equal(again["image"].values, image.values)


def test_sel_stays_lazy(tmp_path) -> None:
    stored = _ct_series(tmp_path / "ct")
    image = xr.open_dataset(tmp_path / "ct", engine="dicom", chunks={})["image"]
    picked = image.sel(slice=image["slice"][3], row=image["row"][4:9])
    assert picked.chunks is not None  # still a dask array
    np.testing.assert_array_equal(picked.values, stored[3, 4:9].astype(np.float32) - 1024)
    lazy = xr.open_dataset(tmp_path / "ct", engine="dicom")["image"]  # chunks=None
    picked = lazy.sel(slice=lazy["slice"][3])
    assert not picked.variable._in_memory
    np.testing.assert_array_equal(picked.values, stored[3].astype(np.float32) - 1024)


def test_real_ct_equals_highdicom_hounsfield_units(real_dir) -> None:
    hd = pytest.importorskip("highdicom")
    folder = REAL / "volume_series" / "ct_3slice"
    ds = xr.open_dataset(folder, engine="dicom", chunks={})
    image = ds["image"]
    assert image.dims == ("slice", "row", "column")
    reference = hd.get_volume_from_series([hd.imread(p) for p in sorted(folder.iterdir())])
    np.testing.assert_allclose(np.reshape(image.attrs["affine"], (4, 4)), reference.affine)
    np.testing.assert_array_equal(image.values, reference.array)  # HU, as highdicom
    raw = xr.open_dataset(folder, engine="dicom", mask_and_scale=False)["image"]
    volume = dicom_dask.open_volume(folder)
    np.testing.assert_array_equal(raw.values, volume.array.compute())
    np.testing.assert_allclose(np.diff(image["column"].values), volume.spacing[2])
    np.testing.assert_allclose(np.diff(image["slice"].values), volume.spacing[0])
    # no identifiers by default: the UID is the pseudonym of the volume's (docs/cloud.md)
    assert image.attrs["frame_of_reference_uid"] == pseudonym_uid(volume.frame_of_reference_uid)
    assert "00280010" in image.attrs["dicom_json"]  # Rows, as DICOM JSON


def test_stored_values_without_rescale_stay_stored(real_dir) -> None:
    folder = REAL / "volume_series" / "mr_siemens_4slice"
    image = xr.open_dataset(folder, engine="dicom")["image"]
    assert image.dtype == np.uint16 and "scale_factor" not in image.encoding


def test_slide_file_and_folder_as_dataset_and_datatree(real_dir) -> None:
    path = REAL / "wsi" / "cmu1_napari" / "volume.dcm"
    ds = xr.open_dataset(path, engine="dicom")
    image = ds["image"]
    assert image.dims == ("y", "x", "sample")
    level = dicom_dask.open_tiled(path)
    np.testing.assert_array_equal(image[100:200, 50:80].values, level.array[100:200, 50:80])
    np.testing.assert_allclose(np.diff(image["x"].values), level.pixel_spacing[1])
    assert image["x"].attrs["units"] == "mm" and image["y"].attrs["long_name"]
    # the coordinates follow the level's affine: pixel (0, 0) sits at the matrix origin
    first = level.affine[:3, 3]
    direction = level.affine[:3, 1] / np.linalg.norm(level.affine[:3, 1])
    np.testing.assert_allclose(image["x"].values[0], first @ direction)
    assert "00480006" in image.attrs["dicom_json"]  # Total Pixel Matrix Columns
    # a slide folder is recognised as a slide (not taken for a series)
    folder = xr.open_dataset(REAL / "wsi" / "cmu1_napari", engine="dicom")
    assert folder["image"].shape == (2967, 2220, 3)
    tree = xr.open_datatree(REAL / "wsi" / "cmu1_napari", engine="dicom")
    assert sorted(tree.children) == ["level0", "overview", "thumbnail"]  # no label: it shows
    tree = xr.open_datatree(REAL / "wsi" / "cmu1_napari", engine="dicom", keep_identifiers=True)
    assert sorted(tree.children) == ["label", "level0", "overview", "thumbnail"]
    assert tree["level0"]["image"].shape == (2967, 2220, 3)
    assert tree["label"]["image"].shape == (463, 387, 3)


def test_slide_level_and_select(tmp_path) -> None:
    import pydicom

    from dicom_dask.testing import make_slide_dataset

    rng = np.random.default_rng(0)
    level0 = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    for i in range(2):
        ds = make_slide_dataset(
            np.ascontiguousarray(level0[:: 2**i, :: 2**i]),
            tile=(16, 16),
            transfer_syntax=pydicom.uid.ExplicitVRLittleEndian,
            pixel_spacing=0.001 * 2**i,
            frame_of_reference="1.2.826.0.1.3680043.8.498.77",
            container_id="XR-1",
        )
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.78"
        ds.save_as(tmp_path / f"level{i}.dcm", enforce_file_format=True)
    one = xr.open_dataset(tmp_path, engine="dicom", level=1)
    np.testing.assert_array_equal(one["image"].values, level0[::2, ::2])
    assert one.attrs["level"] == 1
    same = xr.open_dataset(tmp_path, engine="dicom", select=0, kind="slide")
    np.testing.assert_array_equal(same["image"].values, level0)
    with pytest.raises(dicom_dask.errors.DicomDaskError, match="level=5"):
        xr.open_dataset(tmp_path, engine="dicom", level=5)


def test_frames_of_a_plain_image(real_dir) -> None:
    path = REAL / "codecs" / "jpeg_baseline" / "JPEGBaseline_1s_1f_u_08_08.dcm"
    ds = xr.open_dataset(path, engine="dicom", kind="frames")
    assert ds["image"].dims == ("frame", "row", "column")
    np.testing.assert_array_equal(ds["image"].values, dicom_dask.open_frames(path).array.compute())


def test_colour_and_associated_images_keep_their_values(real_dir) -> None:
    path = REAL / "codecs" / "jpeg_baseline" / "examples_ybr_color.dcm"
    image = xr.open_dataset(path, engine="dicom")["image"]
    assert image.dtype == np.uint8 and image.dims == ("frame", "row", "column", "sample")
    np.testing.assert_array_equal(image[3].values, dicom_dask.open_frames(path).array[3])
    label = REAL / "wsi" / "cmu1_napari" / "label.dcm"  # a LABEL instance alone
    image = xr.open_dataset(label, engine="dicom")["image"]
    assert image.attrs["image_type"] == "LABEL"
    np.testing.assert_array_equal(image.values, dicom_dask.open_tiled(label).array)


@pytest.mark.parametrize(
    "name",
    ["enhanced/eCT_Supplemental.dcm", "codecs/jpeg_ls_near/CT1_JLSN.dcm"],
)
def test_real_ct_files_equal_highdicom_volume(real_dir, name) -> None:
    hd = pytest.importorskip("highdicom")
    path = REAL / name
    image = xr.open_dataset(path, engine="dicom")["image"]
    reference = hd.imread(str(path)).get_volume()  # modality rescale applied: HU
    np.testing.assert_allclose(np.reshape(image.attrs["affine"], (4, 4)), reference.affine)
    np.testing.assert_array_equal(image.values, reference.array)
    assert image.encoding["add_offset"] == -1024.0


def test_decoded_dataset_writes_back_as_stored_integers(tmp_path) -> None:
    import warnings

    import zarr

    stored = _ct_series(tmp_path / "ct")
    ds = xr.open_dataset(tmp_path / "ct", engine="dicom")
    with warnings.catch_warnings():  # no SerializationWarning: the packing has a _FillValue
        warnings.simplefilter("error")
        ds.drop_vars(["position_x", "position_y", "position_z"]).to_zarr(
            tmp_path / "out.zarr", consolidated=False
        )
    on_disk = zarr.open_group(tmp_path / "out.zarr", mode="r")["image"]
    assert on_disk.dtype == np.int32  # Hounsfield units packed back (16 bits stored: int32)
    np.testing.assert_array_equal(on_disk[...], stored)
    back = xr.open_zarr(tmp_path / "out.zarr", consolidated=False)["image"]
    np.testing.assert_array_equal(back.values, ds["image"].values)
