"""Every front end opens a source as the same kind, with the same shape (issue 30, point 2).

One table of sources (a multi-frame file, an enhanced CT, one CT slice, a series folder, a
slide folder, DICOMweb series, slide and instance), each opened through the CLI
(``info --json``), xarray (``engine="dicom"``), napari (the reader) and kerchunk
(``to_kerchunk`` then zarr over fsspec's ``ReferenceFileSystem``; ``open_store`` for
DICOMweb, whose frames have no byte ranges to reference). The expected kind and shape
are written down from the files (MANIFEST.md), not computed by dicom_dask.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pydicom
import pytest
import xarray as xr
import zarr

import dicom_dask
from dicom_dask.errors import ManifestError
from dicom_dask.integrations.cli import main
from dicom_dask.integrations.kerchunk import open_store
from dicom_dask.integrations.napari_reader import read
from dicom_dask.testing import make_slide_dataset
from tests.conftest import REAL

SLIDE_LEVEL0 = (64, 96, 3)

# name: (where the source is, the kind, level 0's / the array's shape)
SOURCES: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "multi-frame file": (
        "codecs/jpeg_baseline/examples_ybr_color.dcm",
        "frames",
        (30, 240, 320, 3),
    ),
    "enhanced CT": ("enhanced/eCT_Supplemental.dcm", "volume", (2, 512, 512)),
    "one CT slice": ("volume_series/ct_3slice/01.dcm", "volume", (1, 512, 512)),
    "series folder": ("volume_series/ct_24x38x3", "volume", (3, 38, 24)),
    "slide folder": ("synthetic", "slide", SLIDE_LEVEL0),
    "DICOMweb series": ("dicomweb:series", "volume", (24, 64, 48)),
    "DICOMweb slide": ("dicomweb:wsi/cmu1_napari", "slide", (2967, 2220, 3)),
    "DICOMweb instance": ("dicomweb:volume_series/ct_3slice/01.dcm", "volume", (1, 512, 512)),
}


@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic two-level slide (tiles of 16 px), as a folder of two files."""
    folder = tmp_path_factory.mktemp("slide")
    level0 = np.random.default_rng(0).integers(0, 255, SLIDE_LEVEL0, dtype=np.uint8)
    for i in range(2):
        ds = make_slide_dataset(
            np.ascontiguousarray(level0[:: 2**i, :: 2**i]),
            tile=(16, 16),
            transfer_syntax=pydicom.uid.ExplicitVRLittleEndian,
            pixel_spacing=0.001 * 2**i,
            frame_of_reference="1.2.826.0.1.3680043.8.498.91",
            container_id="FRONT-1",
        )
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.92"
        ds.save_as(folder / f"level{i}.dcm", enforce_file_format=True)
    return folder


def _dicomweb(request: pytest.FixtureRequest, what: str) -> str:
    """The ``dicomweb+`` URL of a series, slide or instance Orthanc was given."""
    server, _ = request.getfixturevalue("dicomweb_server")
    tree: Path = request.getfixturevalue("data_tree")
    if what == "series":
        path = sorted((tree / "series").glob("*.dcm"))[0]
    else:
        path = REAL / what if what.endswith(".dcm") else sorted((REAL / what).glob("*.dcm"))[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    url = f"dicomweb+{server.endpoint}/dicom-web/studies/{ds.StudyInstanceUID}"
    url += f"/series/{ds.SeriesInstanceUID}"
    return url + (f"/instances/{ds.SOPInstanceUID}" if what.endswith(".dcm") else "")


@pytest.fixture(params=list(SOURCES))
def source(request: pytest.FixtureRequest) -> tuple[str, str, tuple[int, ...]]:
    where, kind, shape = SOURCES[request.param]
    if where == "synthetic":
        return str(request.getfixturevalue("slide_folder")), kind, shape
    if where.startswith("dicomweb:"):
        if (not REAL.exists()) and where != "dicomweb:series":
            pytest.skip("the real files are not there")
        return _dicomweb(request, where.removeprefix("dicomweb:")), kind, shape
    if not REAL.exists():
        pytest.skip("the real files are not there")
    return str(REAL / where), kind, shape


# -- each front end: (kind, shape) as its user sees them ----------------------------------
def via_cli(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, tuple[int, ...]]:
    code = main(["info", url, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = json.loads(captured.out)
    kind = info["kind"]
    part = {
        "frames": lambda: info["file"]["shape"],
        "volume": lambda: info["volume"]["shape"],
        "slide": lambda: info["slide"]["levels"][0]["shape"],
    }[kind]()
    return kind, tuple(part)


def via_xarray(url: str, capsys: Any) -> tuple[str, tuple[int, ...]]:
    image = xr.open_dataset(url, engine="dicom")["image"]
    # the dimensions say what it is: frames, slices of a volume, a slide level's y and x
    kind = {"frame": "frames", "slice": "volume", "y": "slide", "c": "slide"}[image.dims[0]]
    return kind, tuple(image.shape)


def via_napari(url: str, capsys: Any) -> tuple[str, tuple[int, ...]]:
    [(data, meta, layer)] = read(url)
    assert layer == "image"
    level0 = data[0] if meta.get("multiscale") else data
    return meta["metadata"]["kind"], tuple(level0.shape)


def _zarr_kind_and_shape(group: zarr.Group) -> tuple[str, tuple[int, ...]]:
    """What a kerchunk reference set (or store) holds, read as plain zarr: ``frames`` or
    ``volume`` at the root (zarr v2, named), else an OME-Zarr group whose first dataset is
    a slide's level 0 (axes reordered as the dask array's: y, x, then the samples)."""
    names = set(group.array_keys())
    if "frames" in names or "volume" in names:
        (name,) = names & {"frames", "volume"}
        return name, tuple(group[name].shape)
    attrs = dict(group.attrs)
    ms = attrs.get("ome", attrs)["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in ms["axes"]]
    shape = dict(zip(axes, group[ms["datasets"][0]["path"]].shape, strict=True))
    samples = (shape["c"],) if shape.get("c", 1) > 1 else ()
    return "slide", (shape["y"], shape["x"], *samples)


def via_kerchunk(url: str, capsys: Any) -> tuple[str, tuple[int, ...]]:
    kind, store = open_store(url)  # what to_kerchunk references, and how it opens it
    node = zarr.open(store, mode="r")  # one array (frames, volume) or an OME-Zarr group
    if isinstance(node, zarr.Array):
        opened = (kind.value, tuple(node.shape))
    else:
        opened = _zarr_kind_and_shape(node)
    assert opened[0] == kind
    if url.startswith("dicomweb+"):
        with pytest.raises(ManifestError, match="no byte ranges"):
            dicom_dask.to_kerchunk(url)
        return opened
    refs = dicom_dask.to_kerchunk(url)
    fs = fsspec.filesystem("reference", fo=json.loads(json.dumps(refs)))
    root = zarr.open_group(zarr.storage.FsspecStore(fs, read_only=True, path=""), mode="r")
    referenced = _zarr_kind_and_shape(root)
    assert referenced == opened
    return referenced


FRONT_ENDS: dict[str, Callable[[str, Any], tuple[str, tuple[int, ...]]]] = {
    "cli": via_cli,
    "xarray": via_xarray,
    "napari": via_napari,
    "kerchunk": via_kerchunk,
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("front_end", list(FRONT_ENDS))
def test_same_kind_and_shape_everywhere(source, front_end: str, capsys) -> None:
    url, kind, shape = source
    assert dicom_dask.source_kind(url) == kind  # the rule itself
    opened = dicom_dask.open_source(url)
    level0 = opened.pyramid[0] if kind == "slide" else opened
    assert tuple(level0.shape) == shape
    assert FRONT_ENDS[front_end](url, capsys) == (kind, shape)


def test_kind_values_and_errors() -> None:
    Kind = dicom_dask.Kind
    assert Kind("VOLUME") is Kind.VOLUME and Kind(" Slide ") is Kind.SLIDE
    assert Kind.FRAMES == "frames" and json.dumps(Kind.SLIDE) == '"slide"'
    for bad in ("pyramid", 3, None):
        with pytest.raises(dicom_dask.errors.InvalidOptionError, match="kind must be one of"):
            Kind(bad)
    # the same error, a DicomDaskError and a ValueError, from every front end
    path = str(REAL / "volume_series" / "ct_3slice" / "01.dcm")
    openers = [
        lambda: dicom_dask.open_source(path, kind="pyramid"),
        lambda: dicom_dask.to_kerchunk(path, kind="pyramid"),
        lambda: xr.open_dataset(path, engine="dicom", kind="pyramid"),
    ]
    for opener in openers:
        with pytest.raises(dicom_dask.errors.InvalidOptionError, match="'pyramid'") as info:
            opener()
        assert isinstance(info.value, dicom_dask.DicomDaskError | ValueError)
