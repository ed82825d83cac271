"""The napari reader: its npe2 manifest, its layer data, and napari itself opening files.

napari's ``ViewerModel`` (no Qt, no OpenGL) opens the files through the registered
plugin, as a viewer would; the reader's layer data are also checked directly.
"""

from __future__ import annotations

import numpy as np
import pytest

import dicom_dask
from dicom_dask.integrations.napari_reader import get_reader

from .conftest import REAL

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
    np.testing.assert_allclose(meta["affine"], volume.affine)
    assert meta["metadata"]["frame_of_reference_uid"] == volume.frame_of_reference_uid


def test_not_dicom_is_declined(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "a.txt")) is None
    (tmp_path / "b.dcm").write_bytes(b"not dicom")
    assert get_reader(str(tmp_path / "b.dcm")) is None


def test_napari_opens_slide_and_volume_headless(real_dir) -> None:
    """napari's own (Qt-free) ViewerModel opens both through the registered plugin."""
    pytest.importorskip("napari")
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    viewer = ViewerModel()
    [slide] = viewer.open(str(REAL / "wsi" / "cmu1_napari"), plugin="dicom_dask")
    assert slide.multiscale and slide.rgb
    assert slide.data[0].shape == (2967, 2220, 3)
    [ct] = viewer.open(str(REAL / "volume_series" / "ct_3slice"), plugin="dicom_dask")
    volume = dicom_dask.open_volume(REAL / "volume_series" / "ct_3slice")
    assert ct.data.shape == (3, 512, 512)
    np.testing.assert_allclose(ct.affine.affine_matrix, volume.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ct.data[1]), volume.array[1].compute())
