"""DICOMweb (Orthanc + its DICOMweb plugin on 127.0.0.1): every opener gives the same arrays
as from the files, frames come as stored, a region costs one request per tile row."""

from __future__ import annotations

import pickle
from collections import defaultdict

import numpy as np
import pydicom
import pytest

import dicom_dask
from dicom_dask.errors import DicomDaskError, ReadError, SourceNotFoundError
from dicom_dask.testing import loopback
from tests.conftest import REAL
from tests.servers import SLIDE_SIZE, SLIDE_TILE

REGION = ((1000, 1500), (2048, 2048))


def _uids(path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _series(files):
    groups = defaultdict(list)
    for path in files:
        study, series, _ = _uids(path)
        groups[(study, series)].append(path)
    return groups


def _root(server) -> str:
    return f"dicomweb+{server.endpoint}/dicom-web"


def _refused(paths) -> bool:
    """Orthanc 1.10 answers 400 to WADO-RS frames of 1-bit native data."""
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.get("BitsAllocated") == 1 and not ds.file_meta.TransferSyntaxUID.is_compressed:
            return True
    return False


def _local_or_error(opener, source):
    try:
        return opener(source), None
    except DicomDaskError as exc:
        return None, type(exc)


def _local_or_same_error(opener, paths, url):
    """The local object, or ``None`` once checked that ``url`` raises as the files do."""
    local, error = _local_or_error(opener, paths)
    if local is None:
        with pytest.raises(error):
            opener(url)
    return local


def test_every_uploaded_file_as_frames(dicomweb_server) -> None:
    server, files = dicomweb_server
    real = [p for f in ("wsi", "volume_series") for p in (REAL / f).rglob("*.dcm")]
    assert len(files) == 25 + len(real), "Orthanc refused files"  # slide + 24 slices + real
    for path in files:
        local, error = _local_or_error(dicom_dask.open_frames, path)
        study, series, sop = _uids(path)
        url = f"{_root(server)}/studies/{study}/series/{series}/instances/{sop}"
        if local is None:
            with pytest.raises(error):
                dicom_dask.open_frames(url).array.compute()
            continue
        if _refused([path]):
            with pytest.raises(ReadError, match=r"instances/.*HTTP 400.*as stored"):
                dicom_dask.open_frames(url)
            continue
        remote = dicom_dask.open_frames(url)
        # Orthanc parses the file for every request: every 97th frame of the big slide
        step = 1 if local.array.shape[0] <= 200 else 97
        expected = local.array[::step].compute()
        np.testing.assert_array_equal(remote.array[::step].compute(), expected, err_msg=path)
        if step == 1:  # zarr asks for one frame per request: small files only
            np.testing.assert_array_equal(remote.zarr[...], expected, err_msg=path)


def test_slides_equal_the_files(dicomweb_server) -> None:
    server, files = dicomweb_server
    slides = [p for p in files if "/wsi/" in p or p.endswith("level0.dcm")]
    compared = 0
    for (study, series), paths in _series(slides).items():
        url = f"{_root(server)}/studies/{study}/series/{series}"
        local = _local_or_same_error(dicom_dask.open_slide, paths, url)
        if local is None:
            continue
        if _refused(paths):
            with pytest.raises(ReadError, match=r"HTTP 400.*as stored"):
                dicom_dask.open_slide(url)
            continue
        remote = dicom_dask.open_slide(url)
        assert remote.dimensions == local.dimensions
        assert sorted(remote.associated) == sorted(local.associated)
        if local.dimensions[0][0] > 4096:
            (x, y), size = REGION
            expected = local.read_region((x, y), 0, size)
            np.testing.assert_array_equal(remote.read_region((x, y), 0, size), expected)
            compared += 1
            continue
        for a, b in zip(remote.levels, local.levels, strict=True):
            np.testing.assert_array_equal(a.compute(), b.compute(), err_msg=url)
        for name, level in local.associated.items():
            np.testing.assert_array_equal(
                remote.associated[name].array.compute(), level.array.compute()
            )
        np.testing.assert_allclose(remote.pyramid[0].affine, local.pyramid[0].affine)
        compared += 1
    assert compared >= (5 if REAL.exists() else 1)


def test_volumes_equal_the_files(dicomweb_server) -> None:
    server, files = dicomweb_server
    series = [p for p in files if "/volume_series/" in p or "/series/" in p]
    compared = 0
    for (study, uid), paths in _series(series).items():
        url = f"{_root(server)}/studies/{study}/series/{uid}"
        local = _local_or_same_error(dicom_dask.open_volume, paths, url)
        if local is None:
            continue
        remote = dicom_dask.open_volume(url)
        np.testing.assert_array_equal(remote.array.compute(), local.array.compute())
        np.testing.assert_allclose(remote.affine, local.affine, atol=1e-9)
        compared += 1
    assert compared >= (3 if REAL.exists() else 1)


def test_region_costs_one_request_per_tile_row(dicomweb_server, data_tree) -> None:
    server, _ = dicomweb_server
    study, series, _ = _uids(data_tree / "slide" / "level0.dcm")
    with loopback.Proxy(server.endpoint) as proxy:
        url = f"dicomweb+{proxy.endpoint}/dicom-web/studies/{study}/series/{series}"
        slide = dicom_dask.open_slide(url)
        metadata = proxy.reset()
        assert len(metadata) <= 3, [(r.method, r.path[-60:]) for r in metadata]
        (x, y), (w, h) = REGION
        region = slide.read_region((x, y), 0, (w, h))
        log = proxy.reset()
    rows = (y + h - 1) // SLIDE_TILE - y // SLIDE_TILE + 1
    assert len(log) <= rows, [r.path[-40:] for r in log]
    assert all("/frames/" in r.path for r in log)
    local = dicom_dask.open_slide(data_tree / "slide")
    np.testing.assert_array_equal(region, local.read_region((x, y), 0, (w, h)))
    assert slide.dimensions == [(SLIDE_SIZE, SLIDE_SIZE)]


def test_client_object_pickling_and_errors(dicomweb_server, data_tree) -> None:
    from dicomweb_client.api import DICOMwebClient

    server, _ = dicomweb_server
    study, series, _ = _uids(
        data_tree / "series" / sorted(p.name for p in (data_tree / "series").glob("*.dcm"))[0]
    )
    client = DICOMwebClient(url=f"{server.endpoint}/dicom-web")
    volume = dicom_dask.open_volume(dicom_dask.dicomweb(client, study, series))
    expected = dicom_dask.open_volume(data_tree / "series").array.compute()
    np.testing.assert_array_equal(volume.array.compute(), expected)
    # the graph holds URLs, not the client: other processes build their own
    again = pickle.loads(pickle.dumps(volume.array))
    np.testing.assert_array_equal(again.compute(scheduler="processes", num_workers=2), expected)
    with pytest.raises(SourceNotFoundError, match=r"1\.2\.3\.4\.5"):
        dicom_dask.open_volume(f"{_root(server)}/studies/{study}/series/1.2.3.4.5")
    # a study: QIDO-RS finds its series
    whole_study = dicom_dask.open_volume(f"{_root(server)}/studies/{study}")
    np.testing.assert_array_equal(whole_study.array.compute(), expected)
    with pytest.raises(DicomDaskError, match="expected dicomweb"):
        dicom_dask.open_slide("dicomweb+http://127.0.0.1:1/dicom-web/nothing")
