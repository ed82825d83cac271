"""The napari reader: its npe2 manifest, its layer data, and napari itself opening files.

napari's ``ViewerModel`` (no Qt, no OpenGL) opens the files through the registered
plugin, as a viewer would; the reader's layer data are also checked directly.
"""

from __future__ import annotations

import numpy as np
import pytest

import dicom_dask
from dicom_dask.integrations.napari_reader import get_reader
from tests.conftest import REAL

npe2 = pytest.importorskip("npe2")


def test_manifest_is_valid_and_discoverable() -> None:
    from importlib.resources import files

    manifest = npe2.PluginManifest.from_file(files("dicom_dask.integrations") / "napari.yaml")
    assert manifest.name == "dicom_dask"
    reader = manifest.contributions.readers[0]
    assert reader.accepts_directories
    command = manifest.contributions.commands[0]
    assert command.python_name == "dicom_dask.integrations.napari_reader:get_reader"
    from importlib.metadata import entry_points

    names = [ep.name for ep in entry_points(group="napari.manifest")]
    assert "dicom_dask" in names


def test_slide_opens_as_multiscale(real_dir) -> None:
    folder = REAL / "wsi" / "cmu1_napari"
    reader = get_reader(str(folder))
    assert reader is not None
    [(data, meta, kind)] = reader(str(folder))
    assert kind == "image" and meta["multiscale"] and meta["rgb"]
    assert [a.shape for a in data] == [(2967, 2220, 3)]
    np.testing.assert_allclose(meta["scale"], (0.000499, 0.000499))
    np.testing.assert_array_equal(
        data[0][:64, :64].compute(),
        dicom_dask.open_tiled(folder / "volume.dcm").array[:64, :64].compute(),
    )


def test_series_opens_as_volume_with_affine(real_dir) -> None:
    folder = REAL / "volume_series" / "ct_3slice"
    [(data, meta, kind)] = get_reader(str(folder))(str(folder))
    volume = dicom_dask.open_volume(folder)
    assert kind == "image" and data.shape == (3, 512, 512)
    # axial: world axes (S, P, L) follow the array axes; the LPS affine is kept beside
    assert meta["metadata"]["world_axes"] == ("S", "P", "L")
    np.testing.assert_allclose(meta["metadata"]["affine_lps"], volume.affine)
    np.testing.assert_allclose(meta["affine"], volume.affine[[2, 1, 0, 3]])
    assert meta["metadata"]["frame_of_reference_uid"] == volume.frame_of_reference_uid
    # CT is shown in Hounsfield units, within the header's window (center 40, width 400)
    np.testing.assert_array_equal(data[1].compute(), volume.transformed().array[1].compute())
    assert meta["metadata"]["rescale"] == {"slope": 1.0, "intercept": -1024.0, "units": "HU"}
    assert meta["contrast_limits"] == (40 - 0.5 - 399 / 2, 40 - 0.5 + 399 / 2)


def test_contrast_limits_follow_the_window_else_bits_stored(tmp_path) -> None:
    from dicom_dask.testing import write_series

    rng = np.random.default_rng(2)
    stored = rng.integers(0, 4000, (5, 8, 8)).astype(np.uint16)
    window = {"WindowCenter": 300, "WindowWidth": 1000, "VOILUTFunction": "LINEAR_EXACT"}
    rescale = {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0}
    write_series(tmp_path / "ct", stored, extra=[{**window, **rescale}] * 5)
    [(_, meta, _)] = get_reader(str(tmp_path / "ct"))(str(tmp_path / "ct"))
    assert meta["contrast_limits"] == (-200.0, 800.0)  # LINEAR_EXACT: center -/+ width / 2
    # no window: the Bits Stored range (12 bits here), rescaled as the layer is
    bits = {"BitsStored": 12, "HighBit": 11}
    write_series(tmp_path / "nowin", stored, extra=[{**rescale, **bits}] * 5)
    [(data, meta, _)] = get_reader(str(tmp_path / "nowin"))(str(tmp_path / "nowin"))
    assert meta["contrast_limits"] == (-1024.0, 4095.0 - 1024.0)
    write_series(tmp_path / "mr", stored, extra=[bits] * 5, modality="MR")
    [(data, meta, _)] = get_reader(str(tmp_path / "mr"))(str(tmp_path / "mr"))
    assert data.dtype == np.uint16 and "rescale" not in meta["metadata"]  # no rescale
    assert meta["contrast_limits"] == (0.0, 4095.0)


def test_fmri_channels_open_rescaled_within_the_window(real_dir) -> None:
    path = REAL / "enhanced" / "philips_enhanced_fmri.dcm"
    [(data, meta, _)] = get_reader(str(path))(str(path))
    volume = dicom_dask.open_volume(path)
    assert meta["channel_axis"] == 3 and len(meta["name"]) == volume.shape[3]
    np.testing.assert_array_equal(data[4].compute(), volume.transformed().array[4].compute())
    low, high = meta["contrast_limits"]
    assert 0 < low < high and (low, high) != (0, 1)  # the header's window, not napari's [0, 1]


def test_slide_levels_and_limits_are_given_up_front(real_dir, monkeypatch) -> None:
    from dicom_dask.integrations import napari_reader

    folder = REAL / "wsi" / "cmu1_napari"
    [(data, meta, _)] = napari_reader.read(str(folder))
    assert meta["contrast_limits"] == (0.0, 255.0)  # napari computes nothing from pixels
    assert len(data) == 1
    # a smallest level too large for napari to read whole gains the THUMBNAIL image
    monkeypatch.setattr(napari_reader, "THUMBNAIL_EDGE", 1000)
    [(data, meta, _)] = napari_reader.read(str(folder))
    assert [a.shape for a in data] == [(2967, 2220, 3), (768, 574, 3)]
    assert meta["metadata"]["thumbnail_level"]
    thumbnail = dicom_dask.open_slide(folder).thumbnail
    np.testing.assert_array_equal(data[1][:50].compute(), thumbnail[:50].compute())


def test_not_dicom_is_declined(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "a.txt")) is None
    (tmp_path / "b.dcm").write_bytes(b"not dicom")
    assert get_reader(str(tmp_path / "b.dcm")) is None


def test_napari_opens_slide_and_volume_headless(real_dir) -> None:
    """napari's own (Qt-free) ViewerModel opens both through the registered plugin, after
    npe2's public discovery (what napari.Viewer() does when it starts)."""
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()
    viewer = ViewerModel()
    [slide] = viewer.open(str(REAL / "wsi" / "cmu1_napari"), plugin="dicom_dask")
    assert slide.multiscale and slide.rgb
    assert slide.data[0].shape == (2967, 2220, 3)
    assert tuple(slide.contrast_limits) == (0, 255)
    [ct] = viewer.open(str(REAL / "volume_series" / "ct_3slice"), plugin="dicom_dask")
    volume = dicom_dask.open_volume(REAL / "volume_series" / "ct_3slice")
    assert ct.data.shape == (3, 512, 512)
    np.testing.assert_allclose(ct.affine.affine_matrix, volume.affine[[2, 1, 0, 3]], atol=1e-6)
    viewer.dims.ndisplay = 2  # the 2-D view of an axial series slices (no singular block)
    assert np.isfinite(ct._data_to_world.set_slice(list(viewer.dims.displayed)).inverse.scale).all()
    hu = volume.transformed().array[1].compute()
    np.testing.assert_array_equal(np.asarray(ct.data[1]), hu)
    assert tuple(ct.contrast_limits) == (-160.0, 239.0)  # the CT window 40 / 400


def test_a_list_of_slide_files_opens_as_a_slide(real_dir) -> None:
    folder = REAL / "wsi" / "cmu1_napari"
    files = [str(folder / "volume.dcm"), str(folder / "thumbnail.dcm")]
    reader = get_reader(files)
    assert reader is not None
    [(data, meta, _)] = reader(files)
    assert meta["multiscale"] and [a.shape for a in data] == [(2967, 2220, 3)]


@pytest.mark.parametrize(
    ("orientation", "axes"),
    [
        ((1, 0, 0, 0, 1, 0), ("S", "P", "L")),  # axial
        ((0, 1, 0, 0, 0, -1), ("L", "S", "P")),  # sagittal
        ((1, 0, 0, 0, 0, -1), ("P", "S", "L")),  # coronal
        ((0.8, 0.6, 0, -0.6, 0.8, 0), ("S", "P", "L")),  # oblique axial
    ],
)
def test_volume_slices_in_2d_for_every_orientation(tmp_path, orientation, axes) -> None:
    # napari slices data and world with the same axis numbers: with world axes in LPS order
    # an axial series has a singular displayed block and napari's 2-D view raises
    from napari.components import ViewerModel

    from dicom_dask.testing import series_positions, write_series

    folder = tmp_path / "series"
    positions = series_positions(6, orientation=orientation, slice_spacing=2.5)
    write_series(
        folder,
        np.arange(6 * 8 * 8, dtype=np.int16).reshape(6, 8, 8),
        positions=positions,
        orientation=orientation,
    )
    [(data, meta, _)] = get_reader(str(folder))(str(folder))
    assert meta["metadata"]["world_axes"] == axes
    viewer = ViewerModel()
    layer = viewer.add_image(data, **meta)
    viewer.dims.ndisplay = 2
    inverse = layer._data_to_world.set_slice(list(viewer.dims.displayed)).inverse
    assert np.isfinite(inverse.affine_matrix).all()
    # the world point of a voxel maps back to that voxel
    volume = dicom_dask.open_volume(folder)
    np.testing.assert_allclose(meta["metadata"]["affine_lps"], volume.affine)
    world = meta["affine"] @ np.array([2, 3, 5, 1.0])
    lps = dict(zip(axes, world[:3], strict=True))
    np.testing.assert_allclose([lps["L"], lps["P"], lps["S"]], (volume.affine @ [2, 3, 5, 1.0])[:3])
    np.testing.assert_allclose(layer.world_to_data(world[:3]), [2, 3, 5], atol=1e-9)
