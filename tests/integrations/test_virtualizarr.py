"""VirtualiZarr round trips: DicomParser -> kerchunk JSON / Parquet / Icechunk -> values equal
to open_frames / open_slide / open_volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the test extra installs VirtualiZarr, Icechunk, kerchunk and fastparquet: nothing is skipped
import fastparquet  # noqa: F401  (Parquet references)
import icechunk
import kerchunk  # noqa: F401  (VirtualiZarr writes Parquet references through kerchunk.df)
import numpy as np
import pydicom
import pytest
import virtualizarr as vz
import xarray as xr
from dicom_dask.virtualizarr import DicomParser
from obspec_utils.registry import ObjectStoreRegistry
from obstore.store import LocalStore
from pydicom import uid
from virtualizarr.parsers import KerchunkJSONParser, KerchunkParquetParser

import dicom_dask
from dicom_dask.errors import ManifestError
from dicom_dask.testing import make_slide_dataset, write_dicom
from tests.conftest import REAL
from tests.zarr_own import ZARR_OWN

JPEG_FILE = REAL / "wsi" / "cmu1_napari" / "volume.dcm"  # 130 JPEG tiles, YBR_FULL_422
CT_SERIES = REAL / "volume_series" / "ct_24x38x3"


@pytest.fixture(autouse=True, params=["zarr defaults", "zarr_settings"])
def pipeline(request: pytest.FixtureRequest) -> Any:
    """Every round trip is read with zarr's default codec pipeline and with dicom_dask's
    (``zarr_settings()``), which leaves stores it cannot read directly (Icechunk,
    VirtualiZarr's ManifestStore) to the codec, all chunks of a selection at once."""
    import zarr

    own = request.param == "zarr defaults"  # zarr's own pipeline, named explicitly
    with zarr.config.set(ZARR_OWN if own else dicom_dask.zarr_settings()):
        yield request.param


def _registry() -> ObjectStoreRegistry:
    return ObjectStoreRegistry({"file://": LocalStore()})


def _values(store: Any, name: str) -> np.ndarray:
    ds = xr.open_zarr(store, consolidated=False, zarr_format=3, chunks=None)
    return np.asarray(ds[name].values)


def _kerchunk_round_trips(vds: xr.Dataset, name: str, tmp: Path, expected: np.ndarray) -> None:
    """Write with VirtualiZarr to kerchunk JSON and Parquet, parse back, read the values."""
    registry = _registry()
    vds.vz.to_kerchunk(str(tmp / "refs.json"), format="json")
    store = KerchunkJSONParser()((tmp / "refs.json").as_uri(), registry)
    np.testing.assert_array_equal(_values(store, name), expected)
    vds.vz.to_kerchunk(str(tmp / "refs.parq"), format="parquet")
    store = KerchunkParquetParser()((tmp / "refs.parq").as_uri(), registry)
    np.testing.assert_array_equal(_values(store, name), expected)


def _no_auth() -> Any:
    """Local files need no credential: Icechunk 2 names that explicitly, Icechunk 1 with None."""
    return getattr(getattr(icechunk, "credentials", None), "LocalFileSystemAccess", None)


def _repository(tmp: Path, data_dir: Path) -> Any:
    """A local Icechunk repository allowed to read virtual chunks under ``data_dir``."""
    prefix = data_dir.resolve().as_uri() + "/"
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(
        icechunk.VirtualChunkContainer(prefix, icechunk.local_filesystem_store(str(data_dir)))
    )
    return icechunk.Repository.create(
        icechunk.local_filesystem_storage(str(tmp / "repo")),
        config,
        authorize_virtual_chunk_access=icechunk.containers_credentials({prefix: _no_auth()}),
    )


def test_multiframe_jpeg_file(real_dir, tmp_path) -> None:
    expected = dicom_dask.open_frames(JPEG_FILE).array.compute()
    vds = vz.open_virtual_dataset(
        str(JPEG_FILE), parser=DicomParser(kind="frames"), registry=_registry()
    )
    assert list(vds.data_vars) == ["frames"] and vds["frames"].shape == expected.shape
    codecs = [c.to_dict()["name"] for c in vds["frames"].data.metadata.codecs]
    assert codecs == ["bytes", "numcodecs.dicom_dask.frame"]
    # the parser's ManifestStore itself, then kerchunk JSON and Parquet
    store = DicomParser(kind="frames")(JPEG_FILE.as_uri(), _registry())
    np.testing.assert_array_equal(_values(store, "frames"), expected)
    _kerchunk_round_trips(vds, "frames", tmp_path, expected)
    # Icechunk: commit the virtual references, read them back through xr.open_zarr
    repo = _repository(tmp_path, JPEG_FILE.parent)
    session = repo.writable_session("main")
    vds.vz.to_icechunk(session.store)
    session.commit("frames of a JPEG file")
    readonly = repo.readonly_session(branch="main")
    np.testing.assert_array_equal(_values(readonly.store, "frames"), expected)


def test_our_kerchunk_references_parse_in_virtualizarr(real_dir, tmp_path) -> None:
    """to_kerchunk's output (zarr v2, named variables) is read by KerchunkJSONParser."""
    import json

    refs = dicom_dask.to_kerchunk(CT_SERIES)
    (tmp_path / "ct.json").write_text(json.dumps(refs))
    store = KerchunkJSONParser()((tmp_path / "ct.json").as_uri(), _registry())
    expected = dicom_dask.open_volume(CT_SERIES).array.compute()
    np.testing.assert_array_equal(_values(store, "volume"), expected)
    refs = dicom_dask.to_kerchunk(JPEG_FILE, kind="frames")
    (tmp_path / "f.json").write_text(json.dumps(refs))
    store = KerchunkJSONParser()((tmp_path / "f.json").as_uri(), _registry())
    frames = dicom_dask.open_frames(JPEG_FILE).array
    np.testing.assert_array_equal(_values(store, "frames")[:5], frames[:5].compute())


def test_ct_series(real_dir, tmp_path) -> None:
    volume = dicom_dask.open_volume(CT_SERIES)
    expected = volume.array.compute()
    vds = vz.open_virtual_dataset(str(CT_SERIES), parser=DicomParser(), registry=_registry())
    assert list(vds.data_vars) == ["volume"]
    assert vds["volume"].dims == tuple(volume.zarr.metadata.dimension_names)
    _kerchunk_round_trips(vds, "volume", tmp_path, expected)
    repo = _repository(tmp_path, CT_SERIES)
    session = repo.writable_session("main")
    vds.vz.to_icechunk(session.store)
    session.commit("CT series")
    np.testing.assert_array_equal(
        _values(repo.readonly_session(branch="main").store, "volume"), expected
    )


@pytest.fixture
def pyramid(tmp_path) -> Path:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (256, 320, 3)).astype(np.uint8)
    folder = tmp_path / "slide"
    folder.mkdir()
    common = {"frame_of_reference": "1.2.3.4", "container_id": "C1", "study_uid": "1.2.3"}
    series = pydicom.uid.generate_uid()
    for i, m in enumerate([base, base[::2, ::2], base[::4, ::4]]):
        ds = make_slide_dataset(
            m,
            tile=(64, 64),
            transfer_syntax=uid.JPEGBaseline8Bit,
            pixel_spacing=0.00025 * 2**i,
            **common,
        )
        ds.SeriesInstanceUID = series
        ds.save_as(folder / f"level{i}.dcm", enforce_file_format=True)
    return folder


def test_slide_pyramid(pyramid, tmp_path) -> None:
    slide = dicom_dask.open_slide(pyramid)
    expected = [np.asarray(slide.zarr[str(i)][...]) for i in range(3)]
    tree = vz.open_virtual_datatree(
        str(pyramid), parser=DicomParser(kind="slide"), registry=_registry()
    )
    assert sorted(tree.children) == ["0", "1", "2"]
    assert [tree[str(i)]["image"].shape for i in range(3)] == [e.shape for e in expected]
    repo = _repository(tmp_path, pyramid)
    session = repo.writable_session("main")
    tree.vz.to_icechunk(session.store)
    session.commit("a slide pyramid")
    readonly = repo.readonly_session(branch="main")
    for i in range(3):
        ds = xr.open_zarr(readonly.store, group=str(i), consolidated=False, zarr_format=3)
        np.testing.assert_array_equal(ds["image"].values, expected[i])
    # one level as a Dataset, through kerchunk JSON and Parquet
    level = vz.open_virtual_dataset(str(pyramid), parser=DicomParser(level=1), registry=_registry())
    _kerchunk_round_trips(level, "image", tmp_path, expected[1])


def test_unreferenceable_sources_say_why(tmp_path) -> None:
    arr = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    path = write_dicom(tmp_path / "d.dcm", arr, transfer_syntax=uid.DeflatedExplicitVRLittleEndian)
    with pytest.raises(ManifestError, match="inline chunks"):
        DicomParser()(path, _registry())
    with pytest.raises(ValueError, match="kind must be"):
        DicomParser(kind="pyramid")
    native = write_dicom(tmp_path / "n.dcm", arr)  # plain native pixels keep zarr's bytes codec
    vds = vz.open_virtual_dataset(native, parser=DicomParser(), registry=_registry())
    assert [c.to_dict()["name"] for c in vds["frames"].data.metadata.codecs] == ["bytes"]
    store = DicomParser()(native, _registry())
    np.testing.assert_array_equal(_values(store, "frames"), arr)


def _paths(variable: Any) -> set[str]:
    return {entry["path"] for entry in variable.data.manifest.dict().values()}


def test_a_symlinked_data_folder(pyramid, tmp_path) -> None:
    """A folder opened through a symlink (as ``../shared`` may be): the references name the
    files' real paths, so an Icechunk container made for ``Path.resolve()`` of the link
    reads them, and the same file gets the same URL whichever path opened it."""
    link = tmp_path / "linked"
    link.symlink_to(pyramid, target_is_directory=True)
    expected = np.asarray(dicom_dask.open_slide(pyramid).zarr["1"][...])
    parser = DicomParser(level=1)
    level = vz.open_virtual_dataset(str(link), parser=parser, registry=_registry())
    paths = _paths(level["image"])
    real = pyramid.resolve().as_uri() + "/"
    assert paths and all(p.startswith(real) for p in paths), paths
    via_real = vz.open_virtual_dataset(str(pyramid), parser=parser, registry=_registry())
    assert _paths(via_real["image"]) == paths
    repo = _repository(tmp_path, link)
    session = repo.writable_session("main")
    level.vz.to_icechunk(session.store)
    session.commit("a level through a symlink")
    readonly = repo.readonly_session(branch="main")
    np.testing.assert_array_equal(_values(readonly.store, "image"), expected)
    _kerchunk_round_trips(level, "image", tmp_path, expected)
