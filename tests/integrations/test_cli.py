"""The dicom-dask command: info, index, refs, convert; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr

import dicom_dask
from dicom_dask.integrations.cli import main
from dicom_dask.testing import write_series
from tests.conftest import REAL


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_json_on_folder_slide_and_volume(real_dir, capsys) -> None:
    code, out, _ = _run(capsys, "info", str(REAL / "wsi" / "cmu1_napari"), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["kind"] == "slide" and info["folder"]
    assert len(info["slides"]) == 1 and len(info["slides"][0]["instances"]) == 4
    assert info["slide"]["levels"][0]["shape"] == [2967, 2220, 3]
    assert info["skipped"] == []
    code, out, _ = _run(capsys, "info", str(REAL / "wsi" / "cmu1_napari" / "volume.dcm"), "--json")
    info = json.loads(out)
    assert info["kind"] == "slide" and not info["folder"]
    assert info["slide"]["levels"][0]["shape"] == [2967, 2220, 3]
    path = REAL / "enhanced" / "siemens_xa10_enhanced_mr.dcm"
    code, out, _ = _run(capsys, "info", str(path), "--json")
    info = json.loads(out)
    assert info["kind"] == "volume"
    assert info["volume"]["shape"] == [6, 64, 64]
    assert len(info["volume"]["affine"]) == 4


def test_info_summary_is_readable(real_dir, capsys) -> None:
    code, out, _ = _run(capsys, "info", str(REAL / "wsi" / "cmu1_napari"))
    assert code == 0
    assert "folder holding 1 slide\n" in out
    level = "level 0: 2220 x 2967 px (width x height), uint8 RGB, tiles 240 x 240 px (130/130"
    assert level in out
    assert "label 387 x 463 px" in out  # its 463 rows of 387 columns
    assert len(out.splitlines()) < 10 and "{" not in out
    code, out, _ = _run(capsys, "info", str(REAL / "volume_series" / "ct_3slice"))
    assert code == 0
    assert "volume: CT, 3 slice(s) of 512 x 512 px (width x height), int16, from 3 file(s)" in out
    assert "array shape (3, 512, 512) (slice, row, column)" in out
    assert "values: HU = stored - 1024 (modality rescale)" in out
    assert "display window: -160 to 239 HU" in out  # Window Center 40, Width 400


def _ct(folder, n=5, **extra):
    """A small CT series: stored 0..3000, intercept -1024 (HU), window 40/400."""
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 3000, (n, 12, 14)).astype(np.int16)
    attrs = {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0, "RescaleType": "HU"}
    attrs.update({"WindowCenter": 40, "WindowWidth": 400, **extra})
    write_series(folder, stored, pixel_spacing=(0.5, 0.5), extra=[attrs] * n)
    return dicom_dask.open_volume(folder)


def test_info_names_skipped_files(tmp_path, capsys) -> None:
    _ct(tmp_path / "ct")
    (tmp_path / "ct" / "notes.txt").write_text("not an image")
    pydicom = pytest.importorskip("pydicom")
    sr = pydicom.Dataset()
    sr.SOPClassUID = pydicom.uid.BasicTextSRStorage
    sr.SOPInstanceUID = pydicom.uid.generate_uid()
    sr.Modality = "SR"
    sr.file_meta = pydicom.dataset.FileMetaDataset()
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr.save_as(tmp_path / "ct" / "report.dcm", enforce_file_format=True)
    code, out, _ = _run(capsys, "info", str(tmp_path / "ct"))
    assert code == 0
    assert "skipped 2 file(s):" in out
    assert "notes.txt: not DICOM" in out
    assert "report.dcm: DICOM without pixel data" in out
    code, out, _ = _run(capsys, "info", str(tmp_path / "ct"), "--json")
    skipped = {Path(d["url"]).name: d["reason"] for d in json.loads(out)["skipped"]}
    assert skipped == {"notes.txt": "not DICOM", "report.dcm": "DICOM without pixel data"}


def test_info_on_a_folder_without_dicom_fails_clearly(tmp_path, capsys) -> None:
    for name in ("a.txt", "b.json", "c.dcm"):
        (tmp_path / name).write_text("hello")
    code, out, err = _run(capsys, "info", str(tmp_path))
    assert code == 2 and out == ""
    assert str(tmp_path) in err and "no DICOM image among its 3 file(s)" in err
    assert "a.txt" in err and "Traceback" not in err


def test_refs_of_a_slide_open_in_plain_zarr(real_dir, capsys, tmp_path) -> None:
    path = REAL / "wsi" / "cmu1_napari" / "volume.dcm"
    out_file = tmp_path / "refs.json"
    code, out, _ = _run(capsys, "refs", str(path), "-o", str(out_file), "--kind", "slide")
    assert code == 0 and "references" in out
    refs = json.loads(out_file.read_text())
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    group = zarr.open_group(store, mode="r")
    assert group.attrs["ome"]["version"] == "0.5"
    expected = dicom_dask.open_slide(path).zarr["0"][:, :300, :200]
    np.testing.assert_array_equal(group["0"][:, :300, :200], expected)


def test_convert_slide_and_volume(real_dir, capsys, tmp_path) -> None:
    slide = REAL / "wsi" / "highdicom_sm_image.dcm"
    code, out, _ = _run(capsys, "convert", str(slide), str(tmp_path / "s.zarr"), "-q")
    assert code == 0
    written = zarr.open_group(tmp_path / "s.zarr", mode="r")
    np.testing.assert_array_equal(written["0"][...], dicom_dask.open_slide(slide).zarr["0"][...])
    folder = REAL / "volume_series" / "ct_3slice"
    code, out, _ = _run(capsys, "convert", str(folder), str(tmp_path / "v.zarr"), "-q")
    assert "zarr array" in out
    assert code == 0
    array = zarr.open_array(tmp_path / "v.zarr", mode="r")
    np.testing.assert_array_equal(array[...], dicom_dask.open_volume(folder).array.compute())
    assert len(array.attrs["affine"]) == 4
    assert array.attrs["scale_factor"] == 1.0 and array.attrs["add_offset"] == -1024.0
    assert array.metadata.dimension_names == ("slice", "row", "column")


def test_convert_a_slide_folder_without_as(real_dir, capsys, tmp_path) -> None:
    folder = REAL / "wsi" / "cmu1_napari"
    code, out, err = _run(capsys, "convert", str(folder), str(tmp_path / "s.zarr"), "-q")
    assert code == 0, err
    assert "OME-Zarr" in out
    written = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert written["0"].shape == (3, 2967, 2220)


def test_convert_ct_keeps_hounsfield_units(tmp_path, capsys) -> None:
    volume = _ct(tmp_path / "ct")
    hu = volume.transformed().array.compute()
    code, out, _ = _run(capsys, "convert", str(tmp_path / "ct"), str(tmp_path / "a.zarr"), "-q")
    assert code == 0 and "scale_factor 1 and add_offset -1024" in out
    array = zarr.open_array(tmp_path / "a.zarr", mode="r")
    assert array.dtype == np.int16 and array.attrs["units"] == "HU"
    decoded = array[...] * array.attrs["scale_factor"] + array.attrs["add_offset"]
    np.testing.assert_array_equal(decoded, hu)
    argv = ["convert", str(tmp_path / "ct"), str(tmp_path / "b.zarr"), "-q"]
    code, out, _ = _run(capsys, *argv, "--values", "rescaled")
    assert code == 0 and "rescaled values as float32" in out
    array = zarr.open_array(tmp_path / "b.zarr", mode="r")
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array[...], hu)


def test_convert_ct_with_per_slice_rescale_writes_hounsfield_units(tmp_path, capsys) -> None:
    rng = np.random.default_rng(4)
    stored = rng.integers(0, 3000, (4, 8, 8)).astype(np.int16)
    extra = [{"RescaleSlope": float(1 + i % 2), "RescaleIntercept": -1024.0} for i in range(4)]
    write_series(tmp_path / "ct", stored, extra=extra)
    hu = dicom_dask.open_volume(tmp_path / "ct").transformed().array.compute()
    code, out, _ = _run(capsys, "convert", str(tmp_path / "ct"), str(tmp_path / "o.zarr"), "-q")
    assert code == 0 and "the rescale differs between slices" in out
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "o.zarr", mode="r")[...], hu)


def test_convert_into_an_existing_folder_explains_overwrite(tmp_path, capsys) -> None:
    _ct(tmp_path / "ct")
    dest = tmp_path / "out.zarr"
    assert _run(capsys, "convert", str(tmp_path / "ct"), str(dest), "-q")[0] == 0
    code, out, err = _run(capsys, "convert", str(tmp_path / "ct"), str(dest), "-q")
    assert code == 1 and out == ""
    assert f"{dest} already exists: pass --overwrite" in err
    assert "Traceback" not in err
    code, out, err = _run(capsys, "convert", str(tmp_path / "ct"), str(dest), "-q", "--overwrite")
    assert code == 0, err


def test_thumbnail_of_a_series_is_its_middle_slice_in_the_window(tmp_path, capsys) -> None:
    from PIL import Image

    volume = _ct(tmp_path / "ct")
    code, out, _ = _run(capsys, "thumbnail", str(tmp_path / "ct"), str(tmp_path / "t.png"))
    assert code == 0 and "wrote" in out
    picture = np.asarray(Image.open(tmp_path / "t.png"))
    hu = volume.transformed().array[2].compute().astype(np.float64)
    low, high = 40 - 0.5 - 399 / 2, 40 - 0.5 + 399 / 2  # DICOM's LINEAR window 40/400
    expected = (np.clip((hu - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(picture, expected)


def test_thumbnail_of_a_slide_and_of_frames(real_dir, tmp_path, capsys) -> None:
    from PIL import Image

    folder = REAL / "wsi" / "cmu1_napari"
    argv = ["thumbnail", str(folder), str(tmp_path / "s.png"), "--size", "200"]
    code, _out, _ = _run(capsys, *argv)
    assert code == 0
    picture = Image.open(tmp_path / "s.png")
    assert picture.mode == "RGB" and max(picture.size) == 200
    assert picture.size == (149, 200)  # the thumbnail image's 574 x 768, scaled
    path = REAL / "codecs" / "jpeg_baseline" / "JPEGBaseline_1s_1f_u_08_08.dcm"
    code, _, _ = _run(capsys, "thumbnail", str(path), str(tmp_path / "f.png"))
    assert code == 0
    assert Image.open(tmp_path / "f.png").size == (100, 100)


def test_help_is_plain_words(capsys) -> None:
    for argv in (["--help"], ["convert", "--help"], ["info", "--help"], ["thumbnail", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert ":func:" not in text and ":class:" not in text and "``" not in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "thumbnail" in capsys.readouterr().out


def test_index_then_open_from_it(real_dir, capsys, tmp_path) -> None:
    path = REAL / "wsi" / "highdicom_seg_sm_labelmap_palette.dcm"
    code, out, _ = _run(capsys, "index", str(path), str(tmp_path / "i.json"))
    assert code == 0 and "slide index" in out
    again = dicom_dask.open_slide(index=tmp_path / "i.json")
    np.testing.assert_array_equal(
        again.levels[0].compute(), dicom_dask.open_tiled(path).array.compute()
    )


def test_errors_exit_2_with_the_file_named(tmp_path, capsys) -> None:
    bad = tmp_path / "not-dicom.dcm"
    bad.write_bytes(b"hello" * 100)
    code, _, err = _run(capsys, "info", str(bad))
    assert code == 2
    assert str(bad) in err and "error" in err
    with pytest.raises(SystemExit):
        main(["info", str(bad), "--storage-option", "novalue"])


def _subprocess(*argv: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "dicom_dask.integrations.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_end_to_end_in_a_subprocess(real_dir, tmp_path) -> None:
    path = REAL / "wsi" / "highdicom_sm_image.dcm"
    done = _subprocess("info", str(path))
    assert done.returncode == 0, done.stderr
    assert "slide: 1 level(s)" in done.stdout
    done = _subprocess("refs", str(path), "-o", str(tmp_path / "r.json"))
    assert done.returncode == 0 and (tmp_path / "r.json").exists()
    done = _subprocess("convert", str(path), str(tmp_path / "o.zarr"), "-q")
    assert done.returncode == 0, done.stderr
    done = _subprocess("index", str(path), str(tmp_path / "i.json"))
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_bad_urls_and_options_in_a_subprocess(tmp_path) -> None:
    missing = tmp_path / "missing.dcm"
    done = _subprocess("info", str(missing))
    assert done.returncode == 2
    assert str(missing) in done.stderr and "no such file" in done.stderr
    assert "Traceback" not in done.stderr
    done = _subprocess("info", "nosuchprotocol://bucket/x.dcm")
    assert done.returncode == 2 and "nosuchprotocol://bucket/x.dcm" in done.stderr
    done = _subprocess("info", str(missing), "--storage-option", "novalue")
    assert done.returncode != 0 and "key=value" in done.stderr
    done = _subprocess("frobnicate")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    done = _subprocess("convert", str(missing))
    assert done.returncode == 2 and "dest" in done.stderr


# -- folders holding several slides or series: --select ------------------------------------------
def _link(folder: Path, *sources: Path) -> Path:
    """A folder of symbolic links to the files of ``sources`` (files or folders)."""
    folder.mkdir()
    for source in sources:
        for path in sorted(source.iterdir()) if source.is_dir() else [source]:
            (folder / f"{source.stem}-{path.name}").symlink_to(path)
    return folder


@pytest.fixture
def slides_folder(real_dir, tmp_path) -> Path:
    """Three real slides in one folder: CMU-1 (4 instances) and two highdicom images."""
    wsi = REAL / "wsi"
    return _link(
        tmp_path / "slides",
        wsi / "cmu1_napari",
        wsi / "highdicom_sm_image.dcm",
        wsi / "highdicom_sm_image_grayscale.dcm",
    )


@pytest.fixture
def series_folder(real_dir, tmp_path) -> Path:
    """Two real series in one folder: a 3-slice CT and a 4-slice MR."""
    series = REAL / "volume_series"
    return _link(tmp_path / "series", series / "ct_3slice", series / "mr_siemens_4slice")


def test_thumbnail_of_a_folder_of_several_slides_takes_select(slides_folder, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "t.png"
    code, _, err = _run(capsys, "thumbnail", str(slides_folder), str(out))
    assert code == 2 and not out.exists()
    assert "holds 3 slides" in err and "pass --select with an index" in err
    assert "select=" not in err and f"dicom-dask info {slides_folder}" in err
    listed = dicom_dask.list_slides(slides_folder)
    for select in ("0", str(len(listed) - 1)):
        code, printed, err = _run(
            capsys, "thumbnail", str(slides_folder), str(out), "--select", select
        )
        assert code == 0, err
        slide = dicom_dask.open_slide(slides_folder, select=int(select))
        rows, cols = (slide.associated.get("thumbnail") or slide.pyramid[-1]).matrix_shape
        scale = min(1.0, 512 / max(rows, cols))
        assert Image.open(out).size == (max(1, round(cols * scale)), max(1, round(rows * scale)))
        assert "px (width x height) picture" in printed
    cmu = next(s for s in listed if s["container_identifier"] == "Unknown")
    argv = ["thumbnail", str(slides_folder), str(out), "--size", "200"]
    code, _, err = _run(capsys, *argv, "--select", cmu["series_instance_uid"])
    assert code == 0, err
    assert Image.open(out).size == (149, 200)  # CMU-1's thumbnail image, 574 x 768


def test_convert_a_folder_of_several_series_takes_select_uid(series_folder, tmp_path, capsys):
    dest = tmp_path / "v.zarr"
    code, _, err = _run(capsys, "convert", str(series_folder), str(dest), "-q")
    assert code == 2 and "holds 2 stacks" in err and "pass --select (index" in err
    assert "select=" not in err
    listed = dicom_dask.list_series(series_folder)
    mr = next(d for d in listed if d["modality"] == "MR")
    uid = mr["series_instance_uid"]
    argv = ["convert", str(series_folder), str(dest), "-q", "--select", uid, "--keep-identifiers"]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert "zarr array of shape (4, " in out
    expected = dicom_dask.open_volume(series_folder, select=mr["series_instance_uid"])
    array = zarr.open_array(dest, mode="r")
    np.testing.assert_array_equal(array[...], expected.array.compute())
    assert array.attrs["series_instance_uid"] == mr["series_instance_uid"]


def test_a_wrong_select_lists_what_the_folder_holds(slides_folder, series_folder, tmp_path, capsys):
    listed = dicom_dask.list_slides(slides_folder)
    out = str(tmp_path / "t.png")
    code, _, err = _run(capsys, "thumbnail", str(slides_folder), out, "--select", "7")
    assert code == 2 and "--select 7 but there are 3 slides" in err and "select=" not in err
    assert all(s["series_instance_uid"] in err for s in listed)
    code, _, err = _run(capsys, "info", str(slides_folder), "--select", "1.2.3.404")
    assert code == 2 and "no slide with series UID" in err and "'1.2.3.404'" in err
    assert all(s["series_instance_uid"] in err for s in listed)
    code, _, err = _run(
        capsys, "convert", str(series_folder), str(tmp_path / "v.zarr"), "--select", "1.2.404"
    )
    assert code == 2 and "0 stacks match --select '1.2.404'" in err
    assert all(d["series_instance_uid"] in err for d in dicom_dask.list_series(series_folder))
    one = REAL / "codecs" / "jpeg_baseline" / "JPEGBaseline_1s_1f_u_08_08.dcm"
    code, _, err = _run(capsys, "info", str(one), "--select", "0")
    assert code == 1 and "--select picks one slide or series of a folder" in err


def test_info_lists_the_slides_and_series_of_a_folder(slides_folder, series_folder, capsys):
    code, out, _ = _run(capsys, "info", str(slides_folder))
    assert code == 0
    assert "folder holding 3 slides; --select takes an index or the UID shown" in out
    listed = dicom_dask.list_slides(slides_folder)
    lines = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(lines) == 3
    for i, (line, s) in enumerate(zip(lines, listed, strict=True)):
        assert line.startswith(f"  [{i}] {s['series_instance_uid']}  VL Whole Slide Microscopy")
    cmu = next(line for line in lines if "'Unknown'" in line)
    assert "2220 x 2967 px (width x height), 1 level(s) + label, overview, thumbnail" in cmu
    assert "pass --select with an index or UID above to describe one slide" in out
    code, out, _ = _run(capsys, "info", str(series_folder))
    assert code == 0 and "folder holding 2 series" in out
    series = dicom_dask.list_series(series_folder)
    ct = next(i for i, d in enumerate(series) if d["modality"] == "CT")
    ct_uid = series[ct]["series_instance_uid"]
    assert f"  [{ct}] {ct_uid}  CT: 3 slice(s) of 512 x 512 px (width x height)" in out
    code, out, _ = _run(capsys, "info", str(series_folder), "--select", str(ct))
    assert code == 0 and f"--select {ct}:" in out
    assert "volume: CT, 3 slice(s) of 512 x 512 px (width x height)" in out
    code, out, _ = _run(capsys, "info", str(series_folder), "--select", ct_uid, "--json")
    info = json.loads(out)
    assert info["select"] == ct_uid and len(info["series"]) == 2
    assert info["volume"]["series_instance_uid"] == ct_uid


def test_index_and_refs_take_select(slides_folder, series_folder, tmp_path, capsys):
    code, _, err = _run(
        capsys, "index", str(slides_folder), str(tmp_path / "i.json"), "--select", "0"
    )
    assert code == 0, err
    again = dicom_dask.open_slide(index=tmp_path / "i.json")
    assert again.dimensions == dicom_dask.open_slide(slides_folder, select=0).dimensions
    code, _, err = _run(capsys, "refs", str(slides_folder), "-o", str(tmp_path / "r.json"))
    assert code == 2 and "--select" in err and "select=" not in err
    code, _, err = _run(
        capsys, "refs", str(series_folder), "-o", str(tmp_path / "r.json"), "--select", "1"
    )
    assert code == 0, err
    refs = json.loads((tmp_path / "r.json").read_text())
    files = refs["dicom_dask_sources"]["files"]
    assert len(files) == dicom_dask.list_series(series_folder)[1]["files"]


# -- messages that name the fix ---------------------------------------------------------------
def test_several_stacks_are_ambiguous_not_missing(series_folder) -> None:
    from dicom_dask.errors import AmbiguousSourceError, NoImagesError

    with pytest.raises(AmbiguousSourceError, match="holds 2 stacks") as caught:
        dicom_dask.open_volume(series_folder)
    assert isinstance(caught.value, NoImagesError)  # what callers caught before
    with pytest.raises(NoImagesError) as missing:
        dicom_dask.open_volume(series_folder, select=5)
    assert not isinstance(missing.value, AmbiguousSourceError)


@pytest.mark.parametrize(
    ("slope", "intercept", "units", "formula"),
    [
        (1.0, -1024.0, "HU", "HU = stored - 1024"),
        (2.0, 3.5, "OD", "OD = 2 x stored + 3.5"),
        (0.25, 0.0, "US", "value = 0.25 x stored"),  # US: unspecified
    ],
)
def test_info_prints_the_rescale_as_a_formula(tmp_path, capsys, slope, intercept, units, formula):
    stored = np.arange(2 * 4 * 5, dtype=np.int16).reshape(2, 4, 5)
    attrs = {"RescaleSlope": slope, "RescaleIntercept": intercept}
    if units:
        attrs["RescaleType"] = units
    write_series(tmp_path / "s", stored, extra=[attrs] * 2)
    code, out, _ = _run(capsys, "info", str(tmp_path / "s"))
    assert code == 0 and f"values: {formula} (modality rescale)" in out


# -- one size convention: width x height, labelled ----------------------------------------------
def test_sizes_are_width_by_height_everywhere(real_dir, tmp_path, capsys) -> None:
    slide = dicom_dask.open_slide(REAL / "wsi" / "cmu1_napari")
    assert "levels=[2220 x 2967 px] (width x height)" in repr(slide)
    assert repr(slide.pyramid[0]).startswith("Level(VOLUME, 2220 x 2967 px (width x height), ")
    assert "shape=(2967, 2220, 3)" in repr(slide.pyramid[0])  # the array's shape stays NumPy's
    volume = dicom_dask.open_volume(REAL / "volume_series" / "ct_3slice")
    assert repr(volume).startswith("Volume(3 slices of 512 x 512 px (width x height), ")
    wide = np.zeros((64, 96, 3), dtype=np.uint8)  # 96 wide, 64 high
    from pydicom import uid

    from dicom_dask.testing import write_slide

    write_slide(
        tmp_path / "wide.dcm", wide, tile=(32, 32), transfer_syntax=uid.ExplicitVRLittleEndian
    )
    argv = ["convert", str(tmp_path / "wide.dcm"), str(tmp_path / "out"), "--to", "dicom"]
    code, _, err = _run(capsys, *argv, "--transfer-syntax", "explicit")
    assert code == 0, err
    assert "level 0 (96 x 64 px (width x height))" in err
    code, out, _ = _run(capsys, "info", str(tmp_path / "wide.dcm"))
    assert "level 0: 96 x 64 px (width x height)" in out
