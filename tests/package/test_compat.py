"""dicom_dask.compat: each shim over an upstream private API works with the installed
versions, gives what the public API (or pydicom's / highdicom's own reading) gives, and
the installed versions lie in the range each shim declares.

CI runs this on both of its environments (Python 3.11 / zarr 3.1 and Python 3.13 /
zarr 3.4 / dask 2026.8), so every declared range is checked against two installs.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import RLELossless

from dicom_dask import compat
from dicom_dask.errors import DicomDaskError, UnsupportedVersionError
from tests.conftest import REAL

JPEG_FILES = sorted(
    str(p.relative_to(REAL))
    for folder in ("jpeg_baseline", "jpeg_extended", "jpeg_lossless", "jpeg_ls_lossless")
    for p in (REAL / "codecs" / folder).glob("*.dcm")
)
RLE_FILES = sorted(str(p.relative_to(REAL)) for p in (REAL / "codecs" / "rle").glob("*.dcm"))
CT = "volume_series/ct_3slice/01.dcm"


def _first_frame(path: Path) -> tuple[pydicom.Dataset, bytes]:
    ds = pydicom.dcmread(path, force=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return ds, next(generate_frames(ds.PixelData, number_of_frames=frames))


# -- the declared ranges --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(compat.SHIMS))
def test_installed_version_in_declared_range(name: str) -> None:
    shim = compat.SHIMS[name]
    assert callable(getattr(compat, name)), name
    version = compat.installed_version(shim.package)
    if version is None:
        pytest.skip(f"{shim.package} is not installed")
    assert Version(version) in SpecifierSet(shim.versions), (
        f"{shim.package} {version} is outside the range compat.{name} is known to work "
        f"with ({shim.versions}): check {shim.private} in that release, then widen the "
        "range in dicom_dask.compat.SHIMS"
    )


def test_every_shim_is_public_and_documented() -> None:
    for name in compat.SHIMS:
        func = getattr(compat, name)
        assert name in compat.__all__
        assert func.__doc__ and compat.SHIMS[name].versions.split(",")[0][2:] in func.__doc__


def test_missing_private_names_raise_an_error_naming_the_package() -> None:
    with pytest.raises(UnsupportedVersionError, match=r"dicomweb-client [0-9.]+ has no"):
        compat.requests_session(object())
    with pytest.raises(UnsupportedVersionError, match=r"highdicom [0-9.]+ has no") as info:
        compat.pixel_transform_parameters(object())
    assert isinstance(info.value, DicomDaskError) and isinstance(info.value, ImportError)
    # the ranged GETs' shims (exercised against moto and the GCS emulator by
    # tests/frames/test_open_one_request.py)
    with pytest.raises(UnsupportedVersionError, match=r"s3fs .* has no"):
        asyncio.run(compat.s3_call(object(), "get_object"))
    with pytest.raises(UnsupportedVersionError, match=r"gcsfs .* has no"):
        asyncio.run(compat.gcs_call(object(), "GET", "https://example.invalid/x"))


# -- pydicom --------------------------------------------------------------------------


@pytest.mark.parametrize("name", JPEG_FILES)
def test_jpeg_parameters(name: str) -> None:
    ds, frame = _first_frame(REAL / name)
    found = compat.jpeg_parameters(frame)
    public = compat.jpeg_parameters_public(frame)
    assert (found["height"], found["width"]) == (ds.Rows, ds.Columns)
    assert found["components"] == ds.SamplesPerPixel == len(found["component_ids"])
    for key in ("precision", "height", "width", "components", "component_ids", "app"):
        assert public.get(key) == found.get(key), key
    try:
        arr = ds.pixel_array if int(ds.get("NumberOfFrames", 1) or 1) == 1 else ds.pixel_array[0]
    except Exception as exc:  # no decoder installed for this codestream
        pytest.skip(f"pydicom cannot decode {name}: {exc}")
    assert arr.shape[:2] == (found["height"], found["width"])


def test_jpeg_parameters_of_bad_bytes_are_empty() -> None:
    for data in (b"", b"\xff\xd8", b"not a jpeg", b"\xff\xd8\xff\xc0\x00"):
        assert compat.jpeg_parameters(data) == compat.jpeg_parameters_public(data) == {}


@pytest.mark.parametrize("name", RLE_FILES)
def test_rle_segments_and_frames(name: str) -> None:
    ds, frame = _first_frame(REAL / name)
    rows, cols, spp = ds.Rows, ds.Columns, ds.SamplesPerPixel
    nbytes = ds.BitsAllocated // 8
    header = np.frombuffer(frame[:64], dtype="<u4")
    offsets = [*header[1 : 1 + header[0]].tolist(), len(frame)]
    planes = []
    for a, b in itertools.pairwise(offsets):
        segment = compat.rle_decode_segment(frame[a:b])
        assert bytes(segment) == compat.rle_decode_segment_public(frame[a:b])
        planes.append(np.frombuffer(bytes(segment), np.uint8)[: rows * cols])
    # segments are most significant byte first, per sample: rebuild the stored values
    stacked = np.stack(planes).reshape(spp, nbytes, rows * cols)[:, ::-1]
    values = stacked.transpose(2, 0, 1).copy().view(f"<{'iu'[not ds.PixelRepresentation]}{nbytes}")
    expected = ds.pixel_array if int(ds.get("NumberOfFrames", 1) or 1) == 1 else ds.pixel_array[0]
    if ds.get("PhotometricInterpretation") == "YBR_FULL":
        pytest.skip("pixel_array converts YBR to RGB")
    np.testing.assert_array_equal(values.reshape(expected.shape), expected)

    decoded = []
    for fn in (compat.rle_decode_frame, compat.rle_decode_frame_public):
        runner = DecodeRunner(RLELossless)
        runner.set_source(ds)
        runner.set_option("planar_configuration", 0)
        decoded.append(bytes(fn(frame, runner)))
        assert runner.planar_configuration == 1
    assert decoded[0] == decoded[1]
    planar = np.frombuffer(decoded[0], f"<{'iu'[not ds.PixelRepresentation]}{nbytes}")
    np.testing.assert_array_equal(
        np.moveaxis(planar.reshape(spp, rows, cols), 0, -1).squeeze(), expected
    )


def test_raw_element_is_the_stored_element() -> None:
    ds = pydicom.dcmread(REAL / CT)
    for keyword in ("Rows", "PixelSpacing", "RescaleIntercept", "SOPInstanceUID"):
        tag = pydicom.datadict.tag_for_keyword(keyword)
        raw = compat.raw_element(ds, tag)
        public = ds.get_item(tag, keep_deferred=True)
        assert raw is public
        assert isinstance(raw, pydicom.dataelem.RawDataElement)  # not converted
        assert pydicom.dataelem.convert_raw_data_element(raw).value == ds[keyword].value
    assert compat.raw_element(ds, 0x00191234) is None


@pytest.mark.parametrize(
    "name",
    [
        CT,
        "codecs/jpeg_baseline/SC_jpeg_no_color_transform.dcm",
        "codecs/jpeg_baseline/SC_rgb_jpeg_dcmtk.dcm",
    ],
)
def test_character_set(name: str) -> None:
    ds = pydicom.dcmread(REAL / name)
    assert compat.character_set(ds) == compat.character_set_public(ds)
    # dcmread records the same as the original encoding
    assert ds.original_character_set == compat.character_set(ds)


# -- highdicom ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"apply_voi_transform": None},
        {"apply_modality_transform": False},
        {"apply_voi_transform": None, "voi_output_range": (-1.0, 1.0)},
    ],
)
def test_combined_pixel_transform_is_highdicoms_get_frame(options: dict) -> None:
    import highdicom as hd

    ds = pydicom.dcmread(REAL / CT)
    transform = compat.combined_pixel_transform(ds, 0, output_dtype=np.float64, **options)
    expected = hd.imread(REAL / CT).get_frame(1, dtype=np.float64, **options)
    np.testing.assert_array_equal(transform(ds.pixel_array), expected)

    params = compat.pixel_transform_parameters(transform)
    assert params.applies_to_all_frames
    assert params.color_type.endswith("MONOCHROME") and params.color_manager is None
    if options.get("apply_modality_transform") is False:
        assert params.slope_intercept is None
    elif options.get("apply_voi_transform", False) is None and "WindowCenter" in ds:
        window = params.window_center_width
        assert window is not None and str(params.voi_function).upper().endswith("LINEAR")
    else:  # the modality rescale alone: highdicom's output is stored * slope + intercept
        slope, intercept = params.slope_intercept or (1.0, 0.0)
        assert (slope, intercept) == (float(ds.RescaleSlope), float(ds.RescaleIntercept))
        np.testing.assert_array_equal(ds.pixel_array * slope + intercept, expected)


def test_pixel_transform_parameters_of_a_colour_slide() -> None:
    ds = pydicom.dcmread(REAL / "wsi/cmu1_napari/label.dcm")
    params = compat.pixel_transform_parameters(
        compat.combined_pixel_transform(ds, 0, output_dtype=np.uint8)
    )
    assert params.color_type.endswith(".COLOR")
    assert params.slope_intercept is None and not params.has_lut and not params.invert


# -- dask -----------------------------------------------------------------------------


def test_task_spec_graph_computes() -> None:
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    Task, TaskRef, DataNode = compat.task_spec()
    source = np.arange(20).reshape(4, 5)
    graph = {"src": DataNode("src", source)}
    for i in (0, 1):
        rows = DataNode(None, (slice(2 * i, 2 * i + 2),))
        graph[("out", i, 0)] = Task(("out", i, 0), operator.getitem, TaskRef("src"), rows)
    array = da.Array(
        HighLevelGraph.from_collections("out", graph), "out", ((2, 2), (5,)), dtype=source.dtype
    )
    for scheduler in ("sync", "threads"):
        np.testing.assert_array_equal(array.compute(scheduler=scheduler), source)
    assert dask.get(graph, ("out", 1, 0)).tolist() == source[2:4].tolist()


def test_dask_meta() -> None:
    import dask.array as da
    from dask.array.utils import meta_from_array

    array = da.zeros((6, 4), dtype="u2", chunks=3)
    meta, public = compat.dask_meta(array), meta_from_array(array)
    assert type(meta) is type(public) and meta.dtype == public.dtype and meta.ndim == public.ndim


# -- fsspec, dicomweb-client ----------------------------------------------------------


def test_requests_session_is_the_clients() -> None:
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    client = DICOMwebClient(url="http://127.0.0.1:9/dicomweb", session=session)
    assert compat.requests_session(client) is session
    default = compat.requests_session(DICOMwebClient(url="http://127.0.0.1:9/dicomweb"))
    assert isinstance(default, requests.Session)


@pytest.mark.parametrize("url", ["file:///tmp/a/b.dcm", "/tmp/a/b.dcm", "memory://bucket/x.dcm"])
def test_strip_protocol(url: str, tmp_path: Path) -> None:
    import fsspec
    from fsspec.core import strip_protocol
    from fsspec.implementations.local import LocalFileSystem

    fs = fsspec.filesystem("memory" if url.startswith("memory") else "file")
    assert compat.strip_protocol(fs, url) == strip_protocol(url)
    if not url.startswith("memory"):
        assert compat.strip_protocol(LocalFileSystem, url) == strip_protocol(url) == "/tmp/a/b.dcm"


def test_dataset_json_from_many_threads_leaves_pydicoms_validation_mode_alone() -> None:
    # pydicom's to_json_dict(suppress_invalid_tags=True) toggles a process-wide
    # setting; unguarded, concurrent calls leave it at RAISE (seen in the catalog)
    from concurrent.futures import ThreadPoolExecutor

    from pydicom import config
    from pydicom.dataset import Dataset

    before = config.settings.reading_validation_mode
    ds = Dataset()
    ds.PatientName = "A^B"
    ds.SliceThickness = "1.5"
    with ThreadPoolExecutor(8) as pool:
        docs = list(
            pool.map(lambda _: compat.dataset_json(ds, suppress_invalid_tags=True), range(400))
        )
    assert all(d == docs[0] for d in docs)
    assert config.settings.reading_validation_mode == before
