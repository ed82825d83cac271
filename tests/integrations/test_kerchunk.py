"""Reference sets from to_kerchunk reopen in plain zarr and equal our arrays."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
import zarr

import dicom_dask
from tests.conftest import REAL


def _root(refs: dict) -> zarr.Group:
    json.dumps(refs)
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    return zarr.open_group(store, mode="r")


def _open_v3(refs: dict) -> zarr.Array:
    json.dumps(refs)
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    return zarr.open_array(store, mode="r")


TILED_AND_NATIVE = (
    REAL / "wsi" / "cmu1_napari" / "volume.dcm",  # tiled JPEG with BOT
    REAL / "wsi" / "highdicom_sm_image_jpegls_nobot.dcm",  # tiled, scanned fragments
    REAL / "volume_series" / "ct_3slice" / "01.dcm",  # native
)


@pytest.mark.parametrize("path", TILED_AND_NATIVE, ids=lambda p: p.name)
def test_tiled_and_native_files(real_dir, path) -> None:
    expected = dicom_dask.open_frames(path).array.compute()
    refs = dicom_dask.to_kerchunk(path, kind="frames")  # zarr v2, a named variable
    assert "frames/.zarray" in refs["refs"] and "zarr.json" not in refs["refs"]
    group = _root(refs)
    assert group.metadata.zarr_format == 2
    np.testing.assert_array_equal(group["frames"][...], expected)
    v3 = _open_v3(dicom_dask.to_kerchunk(path, kind="FRAMES", zarr_format=3))  # at the root
    np.testing.assert_array_equal(v3[...], expected)


def test_series(real_dir) -> None:
    folder = REAL / "volume_series" / "ct_24x38x3"
    refs = dicom_dask.to_kerchunk(folder)
    expected = dicom_dask.open_volume(folder).array.compute()
    np.testing.assert_array_equal(_root(refs)["volume"][...], expected)
    chunks = [v for k, v in refs["refs"].items() if k.startswith("volume/") and "/." not in k]
    assert len({url for url, _, _ in chunks}) == 3  # 3 files
    v3 = dicom_dask.to_kerchunk(folder, zarr_format=3)
    np.testing.assert_array_equal(_open_v3(v3)[...], expected)


def test_slide_levels_as_groups(real_dir) -> None:
    path = REAL / "wsi" / "highdicom_sm_image.dcm"
    slide = dicom_dask.open_slide(path)
    group = _root(dicom_dask.to_kerchunk(path, kind="slide", zarr_format=2))
    for i in range(len(slide.pyramid)):
        np.testing.assert_array_equal(group[f"{i}/image"][...], slide.zarr[str(i)][...])
    ome = _root(dicom_dask.to_kerchunk(path, kind="slide"))  # OME-Zarr 0.5 (v3) by default
    assert ome.attrs["ome"]["version"] == "0.5"


SYNTHETIC = [
    "native-le",
    "native-be",
    "planar-1",
    "planar-1-be",
    "bits-1-unaligned",
    "float64",
    "empty-bot",
    "multi-fragment-bot",
    "rgb-rle-eot",
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", SYNTHETIC)
def test_v2_references_of_every_layout(tmp_path, name: str) -> None:
    """Big endian, planar (a transpose), 1-bit, float, scanned and split fragments: the
    numcodecs form of the chain decodes each as open_frames does."""
    from dicom_dask.testing import write_dicom
    from tests.images.test_synthetic import CASES

    arr, kwargs = CASES[name]
    path = write_dicom(tmp_path / f"{name}.dcm", arr, **kwargs)
    refs = dicom_dask.to_kerchunk(path, kind="frames")
    zarray = json.loads(refs["refs"]["frames/.zarray"])
    plain = name in ("native-le", "native-be", "float64")
    assert (zarray["filters"] is None) == plain
    np.testing.assert_array_equal(_root(refs)["frames"][...], arr)


def test_chain_codec_config_round_trips() -> None:
    import numcodecs

    from dicom_dask.chunks.numcodec import DicomChainBytesCodec, DicomChainCodec

    chain = [
        {"name": "transpose", "configuration": {"order": [0, 3, 1, 2]}},  # (f,y,x,s) -> (f,s,y,x)
        {"name": "bytes", "configuration": {"endian": "big"}},
    ]
    codec = numcodecs.get_codec(
        {"id": "dicom_dask.frame", "codecs": chain, "chunk_shape": [1, 2, 3, 3], "data_type": "u2"}
    )
    assert isinstance(codec, DicomChainCodec)
    planes = np.arange(18, dtype=">u2").reshape(1, 3, 2, 3)  # stored (f, s, y, x)
    decoded = codec.decode(planes.tobytes())
    np.testing.assert_array_equal(decoded, planes.transpose(0, 2, 3, 1))
    v3 = DicomChainBytesCodec.from_dict(
        {"name": "numcodecs.dicom_dask.frame", "configuration": codec.get_config()}
    )
    assert v3.codec_config == codec.get_config()
    assert DicomChainBytesCodec.from_dict(v3.to_dict()) == v3
    with pytest.raises(dicom_dask.errors.ManifestError, match="cannot express"):
        DicomChainCodec([{"name": "gzip"}], [1], "u1")
