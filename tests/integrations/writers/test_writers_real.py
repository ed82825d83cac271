"""Writers over every real series: SEG and single-frame series from headers found in the wild.

Each real series (``shared/data/real/volume_series``, the enhanced files, the GE and
Philips data under ``tests/data``) gets a threshold mask written as a BINARY SEG, read
back by highdicom and by dicom_dask, or a `DicomDaskError` naming the file and what is
missing; each single-frame series is rewritten in every lossless syntax and reopens
identical. Variants of the real CT headers reproduce what real archives hold: an empty
or multi-valued Specific Character Set, no Frame of Reference, a missing slice, frames
whose pixel count is not a multiple of 8.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dask.array as da
import numpy as np
import pydicom
import pytest
from dask.array.utils import assert_eq

import dicom_dask
from dicom_dask.errors import DicomDaskError, LayoutError
from dicom_dask.integrations.writers import to_dicom_seg, to_dicom_series
from tests.conftest import HERE, REAL

hd = pytest.importorskip("highdicom")

DCIODVFY = shutil.which("dciodvfy")
LOSSLESS = ["explicit", "rle", "jpegls", "jpeg2000-lossless", "htj2k-lossless"]
SERIES = sorted(p.name for p in (REAL / "volume_series").glob("*") if p.is_dir())
ENHANCED = sorted(p.name for p in (REAL / "enhanced").glob("*.dcm"))
TESTS_DATA = ["dcm_qa_ge_dwi", "dcm_qa_enh_philips_fmap"]


def _errors(path: str | Path) -> list[str]:
    """dciodvfy's error lines for ``path`` (as test_writers.py calls it)."""
    assert DCIODVFY is not None
    out = subprocess.run([DCIODVFY, "-new", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def _mask(vol: dicom_dask.Volume) -> np.ndarray:
    """A simple threshold: the brighter half of the stored values."""
    values = np.asarray(vol.array.compute(), dtype=np.float64)
    return (values > np.median(values)).astype(np.uint8)


def _check_seg(path: str, vol: dicom_dask.Volume, mask: np.ndarray) -> None:
    """highdicom and dicom_dask both read ``mask`` back from the SEG at ``path``."""
    seg = hd.seg.segread(path)
    present = [k for k in range(vol.spatial_shape[0]) if not vol.missing_slices[k]]
    datasets, frames, _ = vol.sources
    index = np.asarray(frames).reshape(vol.spatial_shape[0], -1, 2)[:, 0, 0]
    uids = [str(datasets[int(index[k])].SOPInstanceUID) for k in present]
    by_instance = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    np.testing.assert_array_equal(by_instance, mask[present])
    expected = mask * ~vol.missing_slices[:, None, None]  # no frame where no image
    if len(present) > 1:
        got = seg.get_volume(combine_segments=True)
        np.testing.assert_array_equal(got.array, expected)
        np.testing.assert_allclose(got.affine, vol.affine, atol=1e-2)
    again = dicom_dask.open_volume(path, geometry="positions")
    np.testing.assert_array_equal(np.asarray(again.array), expected)


# -- every real series: SEG -----------------------------------------------------------
@pytest.mark.parametrize("name", SERIES)
def test_seg_over_each_real_series(name: str, tmp_path) -> None:
    vol = dicom_dask.open_volume(REAL / "volume_series" / name)
    mask = _mask(vol)
    path = to_dicom_seg(da.from_array(mask, chunks=(2, -1, -1)), tmp_path / "seg.dcm", like=vol,
                        progress=False)  # fmt: skip
    _check_seg(path, vol, mask)
    if DCIODVFY and str(vol.metadata.get("modality")) == "CT":
        assert _errors(path) == []


#: Enhanced files a SEG is not written over, and what the error says besides the file.
REFUSED = {
    "highdicom_seg_ct_binary.dcm": "multi-frame SEG image",
    "liver_seg.dcm": "multi-frame SEG image",
    "liver_seg_nonbyte_aligned.dcm": "multi-frame SEG image",
    "parametric_map_float.dcm": "no ImageOrientationPatient",
    "parametric_map_double_float.dcm": "no ImageOrientationPatient",
    "rtdose.dcm": "not on this image's pixels",  # its frames are placed by a grid vector
}


def _check_enhanced_seg(path: str, vol: dicom_dask.Volume, mask: np.ndarray) -> None:
    seg = hd.seg.segread(path)
    got = seg.get_volume(combine_segments=True)
    np.testing.assert_array_equal(got.array, mask)
    np.testing.assert_allclose(got.affine, vol.affine, atol=1e-3)
    datasets, frames, _ = vol.sources
    first = np.asarray(frames).reshape(vol.spatial_shape[0], -1, 2)[:, 0]
    source = datasets[int(first[0, 0])]
    numbers = [int(f) + 1 for f in first[:, 1]]
    by_frame = seg.get_pixels_by_source_frame(str(source.SOPInstanceUID), numbers,
                                              combine_segments=True)  # fmt: skip
    np.testing.assert_array_equal(by_frame, mask)
    again = dicom_dask.open_volume(path)
    np.testing.assert_array_equal(np.asarray(again.array), mask)


@pytest.mark.parametrize("name", ENHANCED)
def test_seg_over_each_enhanced_file_or_a_clear_refusal(name: str, tmp_path) -> None:
    path = REAL / "enhanced" / name
    try:
        vol = dicom_dask.open_volume(path)
    except DicomDaskError as exc:  # no position in patient space: not a volume
        pytest.skip(f"not opened as a volume: {exc}")
    mask = np.zeros(vol.spatial_shape, np.uint8)
    mask[:, : vol.spatial_shape[1] // 2] = 1
    mask[0, :3, :5] = 0
    if name in REFUSED:
        with pytest.raises(DicomDaskError, match=name) as info:
            to_dicom_seg(mask, tmp_path / "seg.dcm", like=vol, progress=False)
        assert REFUSED[name] in str(info.value)
        assert not (tmp_path / "seg.dcm").exists()
        return
    written = to_dicom_seg(mask, tmp_path / "seg.dcm", like=vol, progress=False)
    _check_enhanced_seg(written, vol, mask)
    if not vol.channels:  # a single-frame series is not made from an enhanced image
        with pytest.raises(LayoutError, match=f"{name}: a multi-frame"):
            to_dicom_series(vol, tmp_path / "out", progress=False)
    if DCIODVFY and str(vol.metadata.get("modality")) == "CT":
        assert _errors(written) == []


@pytest.mark.parametrize("name", TESTS_DATA)
def test_seg_over_the_dcm2niix_data(name: str, tmp_path) -> None:
    folder = HERE / "data" / name
    vol = dicom_dask.open_volume(folder)
    assert vol.channels  # several volumes at the same positions
    mask = _mask(vol)[(slice(None),) * 3 + (0,) * (vol.array.ndim - 3)]
    # the SEG references the first volume's images
    path = to_dicom_seg(mask, tmp_path / "seg.dcm", like=vol, progress=False)
    if len(vol.metadata["urls"]) == 1:  # one enhanced file
        _check_enhanced_seg(path, vol, mask)
    else:
        _check_seg(path, vol, mask)
    with pytest.raises(LayoutError, match="channel dimensions"):
        to_dicom_series(vol, tmp_path / "out", progress=False)


# -- every real series: to_dicom_series in every lossless syntax ---------------------------
@pytest.mark.parametrize("syntax", LOSSLESS)
@pytest.mark.parametrize("name", SERIES)
def test_each_real_series_rewritten_reopens_identical(name: str, syntax: str, tmp_path) -> None:
    vol = dicom_dask.open_volume(REAL / "volume_series" / name)
    files = to_dicom_series(vol, tmp_path / "out", transfer_syntax=syntax, progress=False)
    again = dicom_dask.open_volume(tmp_path / "out")
    assert again.dtype == vol.dtype
    assert_eq(again.array, vol.array.compute())
    np.testing.assert_allclose(again.affine, vol.affine)
    assert_eq(again.transformed().array, vol.transformed().array.compute())
    # pydicom decodes what was written to the same values
    first = pydicom.dcmread(files[0])
    np.testing.assert_array_equal(first.pixel_array, vol.array[0].compute())


# -- the real CT with the headers found in the wild -----------------------------------------
def _crop(ds: pydicom.Dataset, rows: slice, cols: slice) -> None:
    """Keep ``ds``'s pixels ``[rows, cols]``, moving Image Position (Patient) with them."""
    pixels = ds.pixel_array[rows, cols].copy()
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    ds.ImagePositionPatient = [
        round(float(v), 4) for v in ipp + rows.start * dr * iop[3:] + cols.start * dc * iop[:3]
    ]
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()


def _variant(root: Path, kind: str) -> Path:
    """The real CT (ct_3slice, its middle 64 x 64) rewritten as archives hold it; for a
    missing slice, the 20-slice oblique MR without one of its inner slices."""
    out = root / kind
    out.mkdir()
    series = "mr_adc_20slice" if kind == "missing-slice" else "ct_3slice"
    files = sorted((REAL / "volume_series" / series).glob("*.dcm"))
    for path in files:
        ds = pydicom.dcmread(path)
        if kind == "odd-columns":  # 63 x 61: frames are not whole bytes
            _crop(ds, slice(200, 263), slice(190, 251))
        elif kind == "missing-slice":
            _crop(ds, slice(96, 160), slice(96, 160))
        else:
            _crop(ds, slice(200, 264), slice(190, 254))
        if kind == "empty-charset":  # as the GE CT: (0008,0005) empty, Latin-1 bytes anyway
            ds.SpecificCharacterSet = ""
            name = "M\xfcller^Hans".encode("latin-1")
            ds["PatientName"] = pydicom.DataElement(0x00100010, "PN", name)
        elif kind == "multi-charset":  # ISO 2022 code extensions: two values
            ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
            ds.PatientName = "Yamada^Tarou=\u5c71\u7530^\u592a\u90ce"
        elif kind == "no-frame-of-reference":
            del ds.FrameOfReferenceUID
            if "PositionReferenceIndicator" in ds:
                del ds.PositionReferenceIndicator
        elif kind == "missing-slice" and path.name == "000010.dcm":
            continue
        ds.save_as(out / path.name, enforce_file_format=True)
    return out


VARIANTS = [
    "empty-charset",
    "multi-charset",
    "no-frame-of-reference",
    "missing-slice",
    "odd-columns",
]


@pytest.fixture(scope="module")
def wild(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wild")
    return {kind: _variant(root, kind) for kind in VARIANTS}


def _open(folder: Path) -> dicom_dask.Volume:
    return dicom_dask.open_volume(folder, geometry="positions")


@pytest.mark.parametrize("kind", VARIANTS)
def test_seg_from_headers_found_in_the_wild(wild: dict[str, Path], kind: str, tmp_path) -> None:
    vol = _open(wild[kind])
    assert vol.missing_slices.any() == (kind == "missing-slice")
    mask = _mask(vol)
    path = to_dicom_seg(mask, tmp_path / "seg.dcm", like=vol, progress=False)
    _check_seg(path, vol, mask)
    seg = pydicom.dcmread(path)
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    source = pydicom.dcmread(next(wild[kind].glob("*.dcm")))
    assert str(seg.PatientName) == str(source.PatientName)
    if kind == "no-frame-of-reference":  # a new one, named as such
        assert seg.FrameOfReferenceUID and seg.PositionReferenceIndicator == ""
    if DCIODVFY:
        assert _errors(path) == []


@pytest.mark.parametrize("syntax", LOSSLESS)
@pytest.mark.parametrize("kind", VARIANTS)
def test_series_from_headers_found_in_the_wild(wild, kind: str, syntax: str, tmp_path) -> None:
    vol = _open(wild[kind])
    assert vol.missing_slices.any() == (kind == "missing-slice")
    files = to_dicom_series(vol, tmp_path / "out", transfer_syntax=syntax, progress=False)
    assert len(files) == int((~vol.missing_slices).sum())
    again = _open(tmp_path / "out")
    assert_eq(again.array, vol.array.compute())
    np.testing.assert_array_equal(again.missing_slices, vol.missing_slices)
    np.testing.assert_allclose(again.affine, vol.affine)
    written = pydicom.dcmread(files[0])
    assert written.SpecificCharacterSet == "ISO_IR 192"
    assert written.FrameOfReferenceUID
    assert len({pydicom.dcmread(f).FrameOfReferenceUID for f in files}) == 1


# -- like= derived volumes ----------------------------------------------------------------------
def test_like_accepts_transformed_sliced_and_computed_volumes(tmp_path) -> None:
    vol = dicom_dask.open_volume(REAL / "volume_series" / "ct_24x38x3")
    mask = _mask(vol)
    for k, like in enumerate((vol.transformed(), vol.compute(), vol.transformed()[1:])):
        labels = mask[1:] if like.spatial_shape[0] == 2 else mask
        path = to_dicom_seg(labels, tmp_path / f"seg{k}.dcm", like=like, progress=False)
        got = hd.seg.segread(path).get_volume(combine_segments=True)
        np.testing.assert_array_equal(got.array, labels)
        np.testing.assert_allclose(got.affine, like.affine, atol=1e-3)
    for bad in (vol[:, 1:], vol.flip(1), vol.permute_spatial_axes((1, 0, 2))):
        with pytest.raises(LayoutError, match="ct_24x38x3"):
            to_dicom_seg(np.zeros(bad.spatial_shape, np.uint8) + 1, tmp_path / "x.dcm",
                         like=bad, progress=False)  # fmt: skip
    with pytest.raises(LayoutError, match="stored values"):
        to_dicom_series(vol.transformed(), tmp_path / "t", progress=False)


# -- acceptance: a bone mask over the real CT ------------------------------------------------
def test_bone_mask_over_the_real_ct_reads_back_in_highdicom(tmp_path) -> None:
    from pydicom.sr.codedict import codes

    ct = dicom_dask.open_volume(REAL / "volume_series" / "ct_3slice")
    hu = ct.transformed()
    bone = hu.array > 300
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="bone",
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Bone,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    path = to_dicom_seg(bone, tmp_path / "bone.dcm", like=hu, segment_descriptions=[description],
                        progress=False)  # fmt: skip
    got = hd.seg.segread(path).get_volume()
    np.testing.assert_array_equal(got.array[..., 0], bone.compute())
    np.testing.assert_allclose(got.affine, ct.affine, atol=1e-6)
    if DCIODVFY:
        assert _errors(path) == []


# -- BINARY tiles that are not whole bytes, over a real slide --------------------------------
def test_binary_seg_over_a_slide_with_10_x_10_tiles(tmp_path) -> None:
    """highdicom's own 50 x 50 slide has 10 x 10 tiles: 100 bits a frame, not whole bytes."""
    slide = dicom_dask.open_slide(REAL / "wsi" / "highdicom_sm_image.dcm")
    yy, xx = np.mgrid[0:50, 0:50]
    labels = ((xx // 7 + yy // 11) % 3).astype(np.uint8)
    path = to_dicom_seg(da.from_array(labels, chunks=20), tmp_path / "seg.dcm", like=slide,
                        segment_labels=["a", "b"], progress=False)  # fmt: skip
    seg = hd.seg.segread(path)
    assert (seg.Rows, seg.Columns, seg.NumberOfFrames) == (10, 10, 50)
    assert len(seg.PixelData) == 626  # continuous: 625 bytes (padded to even), not 50 x 13
    np.testing.assert_array_equal(seg.get_total_pixel_matrix(combine_segments=True), labels)
    level = dicom_dask.open_tiled(path)
    assert_eq(level.array[:, 0], np.stack([labels == 1, labels == 2]).astype(np.uint8))


@pytest.mark.parametrize("shape", [(38, 23), (10, 10), (3, 5), (16, 16)])
def test_bitstream_packs_frames_bit_after_bit(shape: tuple[int, int]) -> None:
    from dicom_dask.integrations.writers.bits import BinaryFrame, Bitstream

    rng = np.random.default_rng(sum(shape))
    frames = rng.integers(0, 2, (7, *shape)).astype(np.uint8)
    stream = Bitstream(shape[0] * shape[1])
    encode = BinaryFrame(1)
    got = b"".join(stream.push(encode(f)) for f in frames) + stream.close()
    expected = np.packbits(frames.ravel(), bitorder="little").tobytes()
    assert got == expected
    assert len(got) == Bitstream.total_bytes(7, shape[0] * shape[1])


def test_a_codec_refusing_a_tile_is_an_encode_error() -> None:
    from dicom_dask.errors import EncodeError
    from dicom_dask.integrations.writers.encode import Encoder, transfer_syntax_uid

    encoder = Encoder(transfer_syntax_uid("jpegls"), 1, "float32")
    with pytest.raises(EncodeError, match="float32 tile in JPEG-LS Lossless"):
        encoder(np.zeros((8, 8), np.float32))


def test_cli_rewrites_the_signed_real_ct_in_jpegls(tmp_path) -> None:
    """The command docs/writing.md shows, over the signed (int16) real CT."""
    from dicom_dask.integrations.cli import main

    folder = REAL / "volume_series" / "ct_3slice"
    assert main(["convert", str(folder), str(tmp_path / "out"), "--to", "dicom", "-q",
                 "--transfer-syntax", "jpegls"]) == 0  # fmt: skip
    vol = dicom_dask.open_volume(folder)
    assert vol.dtype == np.int16
    assert_eq(dicom_dask.open_volume(tmp_path / "out").array, vol.array.compute())


# -- every real series: Parametric Map with like= the transformed volume ---------------------
def _check_pmap(path: str, vol: dicom_dask.Volume, values: np.ndarray) -> None:
    """highdicom reads ``values`` back from the Parametric Map at ``path``: one frame per
    slice that has an image, at its position, and as a volume with ``vol``'s affine."""
    ds = pydicom.dcmread(path)
    pm = hd.pm.ParametricMap.from_dataset(ds)
    present = np.flatnonzero(~vol.missing_slices)
    assert int(ds.NumberOfFrames) == len(present)
    got = np.asarray(ds.pixel_array).reshape(values[present].shape)
    np.testing.assert_array_equal(got, values[present])
    positions = [
        [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        for item in ds.PerFrameFunctionalGroupsSequence
    ]
    expected = vol.map_indices_to_reference([[k, 0, 0] for k in present])
    np.testing.assert_allclose(positions, expected, atol=1e-3)
    if len(present) > 1:  # a missing slice is a gap in the frames' positions
        volume = pm.get_volume(allow_missing_positions=bool(vol.missing_slices.any()))
        np.testing.assert_array_equal(volume.array[present], values[present])
        np.testing.assert_allclose(volume.affine, vol.affine, atol=1e-3)


@pytest.mark.parametrize("name", SERIES)
def test_pmap_over_each_real_series_like_the_transformed_volume(name: str, tmp_path) -> None:
    vol = dicom_dask.open_volume(REAL / "volume_series" / name)
    real = vol.transformed()
    values = np.asarray(real.array.compute(), dtype=np.float32)
    path = dicom_dask.to_dicom_pmap(real.array.astype(np.float32), tmp_path / "pm.dcm",
                                    like=real, progress=False)  # fmt: skip
    _check_pmap(path, vol, values)
    if DCIODVFY and str(vol.metadata.get("modality")) == "CT":
        assert _errors(path) == []


@pytest.mark.parametrize("name", TESTS_DATA)
def test_pmap_over_the_dcm2niix_data(name: str, tmp_path) -> None:
    vol = dicom_dask.open_volume(HERE / "data" / name)
    real = vol.transformed()
    first = (slice(None),) * 3 + (0,) * (vol.array.ndim - 3)  # the first volume's images
    values = np.asarray(real.array[first].compute(), dtype=np.float32)
    path = dicom_dask.to_dicom_pmap(values, tmp_path / "pm.dcm", like=real, progress=False)
    _check_pmap(path, vol, values)
    ds = pydicom.dcmread(path)
    refs = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    if len(vol.metadata["urls"]) == 1:  # frames of one enhanced image: named by number
        assert refs.SourceImageSequence[0].ReferencedFrameNumber == 1 + int(
            np.asarray(vol.sources[1]).reshape(vol.spatial_shape[0], -1, 2)[0, 0, 1]
        )


@pytest.mark.parametrize("kind", VARIANTS)
def test_pmap_from_headers_found_in_the_wild(wild: dict[str, Path], kind: str, tmp_path) -> None:
    vol = _open(wild[kind])
    real = vol.transformed()
    values = np.asarray(real.array.compute(), dtype=np.float32)
    path = dicom_dask.to_dicom_pmap(values, tmp_path / "pm.dcm", like=real, progress=False)
    _check_pmap(path, vol, values)
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    source = pydicom.dcmread(next(wild[kind].glob("*.dcm")))
    assert str(ds.PatientName) == str(source.PatientName)
    if kind == "no-frame-of-reference":  # a new one, named as such
        assert ds.FrameOfReferenceUID and ds.PositionReferenceIndicator == ""
    if kind == "missing-slice":  # no frame where no image, the others reference theirs
        uids = [
            str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            for item in ds.PerFrameFunctionalGroupsSequence
        ]
        files = {str(pydicom.dcmread(f).SOPInstanceUID) for f in wild[kind].glob("*.dcm")}
        assert sorted(uids) == sorted(files)
    if DCIODVFY:
        assert _errors(path) == []


def test_pmap_refuses_a_volume_not_on_its_images(tmp_path) -> None:
    vol = dicom_dask.open_volume(REAL / "volume_series" / "ct_24x38x3")
    for bad in (vol[:, 1:], vol.flip(1)):
        values = np.zeros(bad.spatial_shape, np.float32)
        with pytest.raises(LayoutError, match="ct_24x38x3"):
            dicom_dask.to_dicom_pmap(values, tmp_path / "x.dcm", like=bad, progress=False)
        assert not (tmp_path / "x.dcm").exists()


# -- a SEG over a volume at its own in-plane resolution ----------------------------------------
def _coarse_affine(vol: dicom_dask.Volume, factor: int) -> np.ndarray:
    """``vol``'s affine for pixels ``factor`` times wider, their top-left corner on its own."""
    a = np.asarray(vol.affine, dtype=np.float64)
    expected = a.copy()
    expected[:3, 1:3] *= factor
    expected[:3, 3] += (a[:3, 1] + a[:3, 2]) * (factor - 1) / 2  # centre of the first block
    return expected


@pytest.mark.parametrize("name", SERIES)
def test_seg_over_each_real_series_at_its_own_in_plane_resolution(name: str, tmp_path) -> None:
    vol = dicom_dask.open_volume(REAL / "volume_series" / name)
    hu = vol.transformed()
    coarse = _mask(vol)[:, ::2, ::2]  # one label per 2 x 2 block
    spacing = np.asarray(vol.spacing[1:]) * 2
    path = to_dicom_seg(coarse, tmp_path / "seg.dcm", like=hu, pixel_spacing=spacing,
                        progress=False)  # fmt: skip
    seg = hd.seg.segread(path)
    got = seg.get_volume(combine_segments=True)
    np.testing.assert_array_equal(got.array, coarse)
    np.testing.assert_allclose(got.affine, _coarse_affine(vol, 2), atol=1e-3)
    frame = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    assert frame.SourceImageSequence[0].SpatialLocationsPreserved == "NO"
    again = dicom_dask.open_volume(path)
    np.testing.assert_array_equal(np.asarray(again.array), coarse)
    np.testing.assert_allclose(again.affine, _coarse_affine(vol, 2), atol=1e-3)
    if DCIODVFY and str(vol.metadata.get("modality")) == "CT":
        assert _errors(path) == []


def test_fractional_seg_over_the_real_ct_at_a_quarter_resolution(tmp_path) -> None:
    ct = dicom_dask.open_volume(REAL / "volume_series" / "ct_3slice")
    hu = ct.transformed()
    bone = (hu.array > 300).astype(np.float32)
    fraction = bone.reshape(3, 128, 4, 128, 4).mean(axis=(2, 4))  # share of bone per block
    spacing = tuple(np.asarray(ct.spacing[1:]) * 4)
    path = to_dicom_seg(fraction, tmp_path / "seg.dcm", like=hu, segmentation_type="FRACTIONAL",
                        pixel_spacing=spacing, progress=False)  # fmt: skip
    got = hd.seg.segread(path).get_volume(combine_segments=False)
    np.testing.assert_allclose(got.array[..., 0], fraction.compute(), atol=1 / 255 / 2 + 1e-6)
    np.testing.assert_allclose(got.affine, _coarse_affine(ct, 4), atol=1e-3)
    with pytest.raises(LayoutError, match="origin="):
        to_dicom_seg(fraction, tmp_path / "x.dcm", like=hu, segmentation_type="FRACTIONAL",
                     pixel_spacing=2.0, origin=(0.0, 0.0, 0.0), progress=False)  # fmt: skip
    with pytest.raises(LayoutError, match="pixel_spacing="):
        to_dicom_seg(fraction > 0.5, tmp_path / "x.dcm", like=hu, progress=False)
    assert not (tmp_path / "x.dcm").exists()


@pytest.mark.parametrize("name", ENHANCED)
def test_pmap_over_each_enhanced_file_or_a_clear_refusal(name: str, tmp_path) -> None:
    path = REAL / "enhanced" / name
    try:
        vol = dicom_dask.open_volume(path)
    except DicomDaskError as exc:  # no position in patient space: not a volume
        pytest.skip(f"not opened as a volume: {exc}")
    first = (slice(None),) * 3 + (0,) * (vol.array.ndim - 3)
    values = np.asarray(vol.array[first].compute(), dtype=np.float32) / 7
    if name in REFUSED:  # what the SEG refuses, for the same reason
        with pytest.raises(DicomDaskError, match=name) as info:
            dicom_dask.to_dicom_pmap(values, tmp_path / "pm.dcm", like=vol, progress=False)
        assert REFUSED[name] in str(info.value)
        assert not (tmp_path / "pm.dcm").exists()
        return
    written = dicom_dask.to_dicom_pmap(values, tmp_path / "pm.dcm", like=vol, progress=False)
    _check_pmap(written, vol, values)
    ds = pydicom.dcmread(written)
    numbers = [
        int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        for item in ds.PerFrameFunctionalGroupsSequence
    ]
    frames = np.asarray(vol.sources[1]).reshape(vol.spatial_shape[0], -1, 2)[:, 0, 1]
    assert numbers == [int(f) + 1 for f in frames]
    if DCIODVFY and str(vol.metadata.get("modality")) == "CT":
        assert _errors(written) == []
