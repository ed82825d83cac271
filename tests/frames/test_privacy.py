"""Exports carry no patient data by default (PS3.15 Annex E Basic Profile), and do with
``keep_identifiers=True``; the xarray datasets write to zarr and netCDF cleanly.

A series and a slide are written whose headers carry marker values for the patient's
name, ID and birth date, the accession number, the institution and the referring
physician; every byte each export writes is searched for them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import xarray as xr
from pydicom import uid

import dicom_dask
from dicom_dask.frames.annex_e import BASIC_PROFILE
from dicom_dask.frames.deidentify import (
    Rules,
    deidentify_attributes,
    deidentify_dataset,
    deidentify_json,
    pseudonym_uid,
)
from dicom_dask.integrations.cli import main
from dicom_dask.integrations.kerchunk import to_kerchunk
from dicom_dask.testing import write_series, write_slide

MARKERS = {
    "PatientName": "ZQXPATNAME^MARKER",
    "PatientID": "ZQXPATID7731",
    "PatientBirthDate": "19230917",
    "AccessionNumber": "ZQXACC5521",
    "InstitutionName": "ZQX Marker Institute",
    "ReferringPhysicianName": "ZQXREFDOC^MARKER",
}
SERIES_UID = "1.2.826.0.1.3680043.8.498.4242.1"
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.4242.2"
CONTAINER = "ZQXCONTAINER-77"


def _found(root: Path | dict[str, Any] | str, needles: list[str]) -> set[str]:
    """The needles found in any byte of the files under ``root`` (or of a document)."""
    if isinstance(root, dict | str):
        blobs = [(root if isinstance(root, str) else json.dumps(root)).encode()]
    else:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        assert files, f"nothing written under {root}"
        blobs = [p.read_bytes() for p in files]
    return {n for n in needles if any(n.encode() in b for b in blobs)}


MARKER_VALUES = list(MARKERS.values())


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CT series and a two-level slide with marker values in their headers."""
    root = tmp_path_factory.mktemp("privacy")
    rng = np.random.default_rng(29)
    stored = rng.integers(-1000, 2000, (4, 16, 20)).astype(np.int16)  # 12 bits, signed
    rescale = {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0, "RescaleType": "HU"}
    bits = {"BitsStored": 12, "HighBit": 11}  # as most CT: packed back with a spare _FillValue
    extra = [{**MARKERS, **rescale, **bits} for _ in range(4)]
    write_series(
        root / "ct",
        stored,
        extra=extra,
        series_uid=SERIES_UID,
        frame_of_reference=FRAME_OF_REFERENCE,
        pixel_spacing=(0.5, 0.5),
    )
    level0 = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    (root / "wsi").mkdir()
    for i in range(2):
        write_slide(
            root / "wsi" / f"level{i}.dcm",
            np.ascontiguousarray(level0[:: 2**i, :: 2**i]),
            tile=(16, 16),
            transfer_syntax=uid.ExplicitVRLittleEndian,
            pixel_spacing=0.001 * 2**i,
            frame_of_reference=FRAME_OF_REFERENCE,
            series_uid=SERIES_UID,
            container_id=CONTAINER,
            extra=dict(MARKERS),
        )
    write_series(root / "ct16", stored, extra=[rescale] * 4)  # every int16 value may occur
    return {"ct": root / "ct", "ct16": root / "ct16", "wsi": root / "wsi"}


def test_sources_carry_the_markers(sources) -> None:
    """The check below is meaningful: the files themselves hold every marker."""
    for kind in ("ct", "wsi"):
        assert _found(sources[kind], MARKER_VALUES) == set(MARKER_VALUES)
    assert _found(sources["ct16"], MARKER_VALUES) == set()


# -- xarray -> zarr and netCDF -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ct", "wsi"])
@pytest.mark.parametrize("keep", [False, True])
def test_xarray_exports_leave_patient_data_out(sources, tmp_path, kind, keep) -> None:
    ds = xr.open_dataset(sources[kind], engine="dicom", keep_identifiers=keep)
    ds.to_zarr(tmp_path / "out.zarr", consolidated=False)
    ds.to_netcdf(tmp_path / "out.nc")  # netCDF-4 (h5netcdf, in the test extra)
    header = json.loads(ds["image"].attrs["dicom_json"])
    expected = set(MARKER_VALUES) if keep else set()
    assert _found(tmp_path / "out.zarr", MARKER_VALUES) == expected
    assert _found(tmp_path / "out.nc", MARKER_VALUES) == expected
    assert ("00100010" in header) is keep  # Patient Name
    assert "00280010" in header  # Rows: the rest of the header is there
    if not keep:
        assert header["00120062"]["Value"] == ["YES"]  # Patient Identity Removed
        assert header["0020000E"]["Value"] == [pseudonym_uid(SERIES_UID)]
    assert (SERIES_UID in _found(tmp_path / "out.zarr", [SERIES_UID])) is keep


def test_datatree_leaves_patient_data_and_the_label_out(sources, tmp_path) -> None:
    folder = tmp_path / "wsi"
    folder.mkdir()
    for path in sources["wsi"].iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    label = np.full((20, 40, 3), 200, dtype=np.uint8)  # a label shows names, IDs in pixels
    write_slide(
        folder / "label.dcm",
        label,
        tile=(20, 40),
        transfer_syntax=uid.ExplicitVRLittleEndian,
        image_type="LABEL",
        frame_of_reference=FRAME_OF_REFERENCE,
        series_uid=SERIES_UID,
        container_id=CONTAINER,
        extra=dict(MARKERS),
    )
    tree = xr.open_datatree(folder, engine="dicom")
    assert "label" not in tree.children and "level1" in tree.children
    tree.to_zarr(tmp_path / "tree.zarr", consolidated=False)
    assert _found(tmp_path / "tree.zarr", MARKER_VALUES) == set()
    kept = xr.open_datatree(folder, engine="dicom", keep_identifiers=True)
    assert "label" in kept.children
    assert "00100020" in json.loads(kept["level0"]["image"].attrs["dicom_json"])


def test_to_xarray_is_named_image_and_pseudonymous(sources, tmp_path) -> None:
    volume = dicom_dask.open_volume(sources["ct"])
    data = volume.to_xarray()
    assert data.name == "image"
    assert data.attrs["frame_of_reference_uid"] == pseudonym_uid(FRAME_OF_REFERENCE)
    data.to_dataset().to_zarr(tmp_path / "a.zarr", consolidated=False)
    assert _found(tmp_path / "a.zarr", [FRAME_OF_REFERENCE, *MARKER_VALUES]) == set()
    kept = volume.to_xarray(keep_identifiers=True)
    assert kept.attrs["frame_of_reference_uid"] == FRAME_OF_REFERENCE
    np.testing.assert_allclose(np.reshape(data.attrs["affine"], (4, 4)), volume.affine)


# -- writability ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ct", "ct16", "wsi"])
@pytest.mark.parametrize("mask_and_scale", [True, False])
def test_datasets_write_to_netcdf_and_zarr_without_warnings(
    sources, tmp_path, kind, mask_and_scale
) -> None:
    ds = xr.open_dataset(sources[kind], engine="dicom", mask_and_scale=mask_and_scale)
    # netCDF4 (xarray's default engine) and h5netcdf write netCDF-4; scipy writes netCDF-3,
    # which has no unsigned bytes (a slide's RGB): the CT only
    engines = ["netcdf4", "h5netcdf"] + (["scipy"] if kind != "wsi" else [])
    engines = [e for e in engines if e in xr.backends.list_engines()]
    assert "netcdf4" in engines  # the test extra installs it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for engine in engines:
            ds.to_netcdf(tmp_path / f"{engine}.nc", engine=engine)
        ds.to_zarr(tmp_path / "out.zarr", consolidated=False)
    if mask_and_scale and kind == "ct":  # the Hounsfield units went back as stored integers
        assert ds["image"].encoding["dtype"] == np.int16
    opened = [
        xr.open_dataset(tmp_path / f"{e}.nc", engine=e, mask_and_scale=mask_and_scale)
        for e in engines
    ]
    for back in (
        *opened,
        xr.open_zarr(tmp_path / "out.zarr", consolidated=False, mask_and_scale=mask_and_scale),
    ):
        with back:
            assert set(back.coords) == set(ds.coords)
            for name in ds.coords:
                np.testing.assert_array_equal(back[name].values, ds[name].values)
            np.testing.assert_array_equal(back["image"].values, ds["image"].values)
            np.testing.assert_allclose(back["image"].attrs["affine"], ds["image"].attrs["affine"])


# -- convert -------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [False, True])
def test_convert_leaves_identifiers_out(sources, tmp_path, keep) -> None:
    flag = ["--keep-identifiers"] if keep else []
    assert main(["convert", str(sources["ct"]), str(tmp_path / "ct.zarr"), "-q", *flag]) == 0
    found = _found(tmp_path / "ct.zarr", [SERIES_UID, FRAME_OF_REFERENCE, *MARKER_VALUES])
    assert found == ({SERIES_UID, FRAME_OF_REFERENCE} if keep else set())
    one = sorted(sources["ct"].iterdir())[0]
    # one CT slice is a volume of one slice; --as frames writes its frames' attributes
    assert main(["convert", str(one), str(tmp_path / "f.zarr"), "-q", "--as", "frames", *flag]) == 0
    sop = str(pydicom.dcmread(one, stop_before_pixels=True).SOPInstanceUID)
    assert _found(tmp_path / "f.zarr", [sop, *MARKER_VALUES]) == ({sop} if keep else set())


def test_convert_of_a_slide_carries_no_patient_data(sources, tmp_path) -> None:
    assert main(["convert", str(sources["wsi"]), str(tmp_path / "s.zarr"), "-q"]) == 0
    assert _found(tmp_path / "s.zarr", MARKER_VALUES) == set()


# -- references ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ct", "wsi"])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_kerchunk_references_leave_identifiers_out(sources, kind, zarr_format) -> None:
    needles = [SERIES_UID, FRAME_OF_REFERENCE, CONTAINER, *MARKER_VALUES]
    refs = to_kerchunk(sources[kind], zarr_format=zarr_format)
    assert _found(refs, needles) == set()
    kept = _found(
        to_kerchunk(sources[kind], zarr_format=zarr_format, keep_identifiers=True), needles
    )
    assert not kept & set(MARKER_VALUES)  # no header is ever written
    if kind == "ct":  # the series UID is an attribute of the volume array
        assert SERIES_UID in kept
        volume = dicom_dask.open_volume(sources["ct"])
        assert _found(volume.to_kerchunk(), needles) == set()
        assert SERIES_UID in _found(volume.to_kerchunk(keep_identifiers=True), needles)
    elif zarr_format == 3:  # the OME-Zarr group is named after the Container Identifier
        assert CONTAINER in kept


def test_virtualizarr_references_leave_identifiers_out(sources, tmp_path) -> None:
    vz = pytest.importorskip("virtualizarr")
    pytest.importorskip("fastparquet")
    from dicom_dask.virtualizarr import DicomParser
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import LocalStore

    registry = ObjectStoreRegistry({"file://": LocalStore()})
    needles = [SERIES_UID, *MARKER_VALUES]
    for keep in (False, True):
        parser = DicomParser(kind="volume", keep_identifiers=keep)
        vds = vz.open_virtual_dataset(sources["ct"].as_uri(), parser=parser, registry=registry)
        vds.vz.to_kerchunk(str(tmp_path / f"{keep}.json"), format="json")
        vds.vz.to_kerchunk(str(tmp_path / f"{keep}.parq"), format="parquet")
        for name in (f"{keep}.json", f"{keep}.parq"):
            assert _found(tmp_path / name, needles) == ({SERIES_UID} if keep else set())


# -- index sidecars --------------------------------------------------------------------------
def test_sidecars_cache_no_patient_data_and_still_open(sources, tmp_path) -> None:
    volume = dicom_dask.open_volume(sources["ct"])
    volume.save_index(tmp_path / "ct.json")
    assert _found(tmp_path / "ct.json", MARKER_VALUES) == set()
    again = dicom_dask.open_volume(sources["ct"], index=tmp_path / "ct.json")
    np.testing.assert_array_equal(again.array.compute(), volume.array.compute())
    assert again.metadata["series_instance_uid"] == SERIES_UID  # UIDs kept: selection works
    volume.save_index(tmp_path / "kept.json", keep_identifiers=True)
    assert _found(tmp_path / "kept.json", MARKER_VALUES) == set(MARKER_VALUES)

    slide = dicom_dask.open_slide(sources["wsi"])
    slide.save_index(tmp_path / "wsi.json")
    assert _found(tmp_path / "wsi.json", [CONTAINER, *MARKER_VALUES]) == set()
    reopened = dicom_dask.open_slide(sources["wsi"], index=tmp_path / "wsi.json")
    assert reopened.dimensions == slide.dimensions
    np.testing.assert_array_equal(reopened.pyramid[1].array, slide.pyramid[1].array)
    slide.save_index(tmp_path / "wsi-kept.json", keep_identifiers=True)
    assert _found(tmp_path / "wsi-kept.json", MARKER_VALUES) == set(MARKER_VALUES)

    frames = dicom_dask.open_frames(sorted(sources["ct"].iterdir())[0])
    frames.save_index(tmp_path / "one.json")
    assert _found(tmp_path / "one.json", MARKER_VALUES) == set()


# -- the profile -------------------------------------------------------------------------------
def _dataset() -> pydicom.Dataset:
    ds = pydicom.Dataset()
    for keyword, value in MARKERS.items():
        setattr(ds, keyword, value)
    ds.Rows = 4
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID = uid.CTImageStorage
    ds.StudyDate = "20200101"
    ds.add_new(0x00091010, "LO", "private")  # private
    ds.add_new(0x50000010, "US", 3)  # curve data
    ds.add_new(0x60003000, "OW", b"\0\0")  # overlay data
    ds.add_new(0x60000010, "US", 2)  # overlay rows: not in the profile
    ds.add_new(0x00181030, "LO", "protocol")  # Protocol Name: X in the profile
    item = pydicom.Dataset()
    item.PatientName = "NESTED^NAME"
    item.ReferencedSOPInstanceUID = "1.2.3.5"
    item.CodeValue = "kept"
    ds.ProcedureCodeSequence = [item]  # not in the profile: kept, its items cleaned
    ds.OperatorsName = "OPERATOR"
    return ds


def test_deidentify_dataset_and_json() -> None:
    ds = _dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    before = ds.to_json_dict()
    out = deidentify_dataset(ds)
    assert out.file_meta.MediaStorageSOPInstanceUID == pseudonym_uid("1.2.3.4")
    assert ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4"
    assert ds.to_json_dict() == before  # the original is left as it was
    assert out.Rows == 4 and out.SOPClassUID == uid.CTImageStorage
    assert out.SOPInstanceUID == pseudonym_uid("1.2.3.4") != "1.2.3.4"
    for keyword in (*MARKERS, "StudyDate", "OperatorsName", "ProtocolName"):
        assert keyword not in out
    for tag in (0x00091010, 0x50000010, 0x60003000):
        assert tag not in out
    assert 0x60000010 in out
    item = out.ProcedureCodeSequence[0]
    assert "PatientName" not in item and item.CodeValue == "kept"
    assert item.ReferencedSOPInstanceUID == pseudonym_uid("1.2.3.5")
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    doc = deidentify_json(ds.to_json_dict())
    assert doc == out.to_json_dict()
    assert _found(doc, [*MARKER_VALUES, "NESTED", "OPERATOR", "1.2.3.4"]) == set()
    rules = Rules(keep_uids=True, retain={0x00080020})
    kept = deidentify_dataset(ds, rules=rules)
    assert kept.SOPInstanceUID == "1.2.3.4" and kept.StudyDate == "20200101"
    codes = [i.CodeValue for i in kept.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113110", "113106"]


def test_the_table_is_the_standards() -> None:
    from pydicom.datadict import tag_for_keyword

    assert len(BASIC_PROFILE) > 600  # Table E.1-1, 2025 edition: 617 rows with a tag
    expected = {
        "PatientName": "Z",
        "PatientID": "Z/D",
        "PatientBirthDate": "Z",
        "AccessionNumber": "Z",
        "InstitutionName": "X/Z/D",
        "ReferringPhysicianName": "Z",
        "StudyInstanceUID": "U",
        "FrameOfReferenceUID": "U",
        "ContainerIdentifier": "D",
        "SourceImageSequence": "X/Z/U*",
    }
    for keyword, action in expected.items():
        assert BASIC_PROFILE[tag_for_keyword(keyword)] == action, keyword
    assert tag_for_keyword("Modality") not in BASIC_PROFILE


def test_attributes_keep_their_shape() -> None:
    attrs = {
        "dicom_dask": {
            "series_instance_uid": "1.2.3",
            "sop_class_uid": uid.CTImageStorage,
            "coordinates": {"acquisition_time": {"dimension": "t", "values": [50.0, 20.0]}},
        },
        "multiscales": [{"name": CONTAINER, "axes": []}],
    }
    out = deidentify_attributes(attrs)
    assert out["dicom_dask"]["series_instance_uid"] == pseudonym_uid("1.2.3")
    assert out["dicom_dask"]["sop_class_uid"] == uid.CTImageStorage
    assert out["dicom_dask"]["coordinates"]["acquisition_time"]["values"] == [30.0, 0.0]
    assert CONTAINER not in json.dumps(out) and out["multiscales"][0]["axes"] == []
    assert attrs["dicom_dask"]["series_instance_uid"] == "1.2.3"  # a copy


def test_sidecars_keep_every_private_element_the_reader_reads() -> None:
    """An index re-opens as the files do: the private diffusion elements that
    ``images/diffusion.py`` reads (b-values, gradients) are all retained."""
    import re

    from dicom_dask.chunks.sidecar import SIDECAR_RULES

    source = (Path(dicom_dask.__file__).parent / "images" / "diffusion.py").read_text()
    read = {int(t, 16) for t in re.findall(r"0x([0-9A-Fa-f]{8})\b", source)}
    private = {t for t in read if (t >> 16) % 2 == 1}
    assert private and private <= set(SIDECAR_RULES.retain)
    ds = pydicom.Dataset()
    ds.add_new(0x00430010, "LO", "GEMS_PARM_01")  # the block's Private Creator
    ds.add_new(0x00431039, "IS", [1000, 0, 0, 0])
    ds.add_new(0x00431040, "LO", "other private")
    ds.PatientName = "X"
    out = deidentify_dataset(ds, rules=SIDECAR_RULES)
    assert 0x00431039 in out and 0x00430010 in out and 0x00431040 not in out
    assert "PatientName" not in out
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113110", "113106", "113111"]


def test_acquisition_times_are_relative_without_identifiers(tmp_path) -> None:
    """The clock time of an acquisition is identifying: without identifiers a volume's
    acquisition times are counted from the first, in to_xarray and in kerchunk attributes."""
    from dicom_dask.testing.realworld import write_fmri_series

    data = np.random.default_rng(3).integers(0, 4000, (3, 2, 4, 5)).astype(np.int16)
    write_fmri_series(tmp_path / "bold", data)
    volume = dicom_dask.open_volume(tmp_path / "bold")
    clock = np.asarray(volume.metadata["coordinates"]["acquisition_time"]["values"])
    assert clock.min() > 0  # seconds of the day in the files
    relative = volume.to_xarray()["acquisition_time"].values
    np.testing.assert_allclose(relative, clock - clock.min())
    np.testing.assert_allclose(volume.to_xarray(keep_identifiers=True)["acquisition_time"], clock)
    refs = to_kerchunk(tmp_path / "bold", kind="volume")
    attrs = json.loads(refs["refs"]["volume/.zattrs"])["dicom_dask"]
    np.testing.assert_allclose(attrs["coordinates"]["acquisition_time"]["values"], relative)
