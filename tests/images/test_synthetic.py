"""Synthetic files written by pydicom cover the layouts the real set lacks."""

from __future__ import annotations

import importlib.util
import json
import warnings

import fsspec
import numpy as np
import pydicom
import pytest
import zarr
from dask.array.utils import assert_eq
from pydicom import uid

import dicom_dask
from dicom_dask.frames.encapsulated import OffsetTableWarning
from dicom_dask.testing import make_dataset, write_dicom

RNG = np.random.default_rng(42)
U16 = RNG.integers(0, 4000, (5, 16, 24), dtype=np.uint16)
I16 = RNG.integers(-2000, 2000, (3, 16, 24), dtype=np.int16)
RGB = RNG.integers(0, 255, (2, 12, 20, 3), dtype=np.uint8)
BITS = RNG.integers(0, 2, (7, 7, 9), dtype=np.uint8)  # 63 bits per frame: never aligned

CASES = {
    "native-le": (U16, {"transfer_syntax": uid.ExplicitVRLittleEndian}),
    "native-implicit": (U16, {"transfer_syntax": uid.ImplicitVRLittleEndian}),
    "native-be": (I16, {"transfer_syntax": uid.ExplicitVRBigEndian}),
    "planar-1": (RGB, {"planar_configuration": 1}),
    "planar-1-be": (RGB, {"planar_configuration": 1, "transfer_syntax": uid.ExplicitVRBigEndian}),
    "bits-1-unaligned": (BITS, {"bits_allocated": 1}),
    "float32": (RNG.random((3, 8, 8), dtype=np.float32), {}),
    "float64": (RNG.random((3, 8, 8)), {}),
    "eot": (U16, {"transfer_syntax": uid.RLELossless, "offset_table": "eot"}),
    "bot": (U16, {"transfer_syntax": uid.RLELossless, "offset_table": "bot"}),
    "empty-bot": (U16, {"transfer_syntax": uid.RLELossless, "offset_table": "none"}),
    "multi-fragment-bot": (
        U16,
        {"transfer_syntax": uid.RLELossless, "offset_table": "bot", "fragments_per_frame": 3},
    ),
    "multi-fragment-no-bot": (
        U16,
        {"transfer_syntax": uid.JPEGLSLossless, "offset_table": "none", "fragments_per_frame": 2},
    ),
    "rgb-rle-eot": (RGB, {"transfer_syntax": uid.RLELossless, "offset_table": "eot"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_synthetic_layouts(tmp_path, name: str) -> None:
    arr, kwargs = CASES[name]
    path = write_dicom(tmp_path / f"{name}.dcm", arr, **kwargs)
    frames = dicom_dask.open_frames(path)
    assert frames.array.chunks[0] == (1,) * arr.shape[0]
    assert_eq(frames.array, arr)
    np.testing.assert_array_equal(frames.zarr[...], arr)
    expected = pydicom.dcmread(path).pixel_array.reshape(arr.shape)
    np.testing.assert_array_equal(frames.array.compute(), expected)
    # single frames and slices read the right bytes
    np.testing.assert_array_equal(frames.array[1].compute(), arr[1])
    np.testing.assert_array_equal(frames.array[-1, 2:5].compute(), arr[-1, 2:5])


def test_index_methods(tmp_path) -> None:
    methods = {}
    for name in ("eot", "bot", "empty-bot", "multi-fragment-no-bot", "native-le"):
        arr, kwargs = CASES[name]
        path = write_dicom(tmp_path / f"{name}.dcm", arr, **kwargs)
        methods[name] = dicom_dask.open_frames(path).index.ranges.method
    assert methods == {
        "eot": "eot",
        "bot": "bot",
        "empty-bot": "scan",
        "multi-fragment-no-bot": "scan",
        "native-le": "native",
    }


def test_wrong_bot_falls_back_to_scan(tmp_path) -> None:
    ds = make_dataset(U16, transfer_syntax=uid.RLELossless, offset_table="bot")
    value = bytearray(ds.PixelData)
    # Swap two BOT entries: offsets no longer increase.
    entries = np.frombuffer(bytes(value[8 : 8 + 4 * 5]), dtype="<u4").copy()
    entries[[1, 2]] = entries[[2, 1]]
    value[8 : 8 + 20] = entries.tobytes()
    ds.PixelData = bytes(value)
    path = tmp_path / "wrong-bot.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.warns(OffsetTableWarning, match="Basic Offset Table"):
        frames = dicom_dask.open_frames(path)
    assert frames.index.ranges.method == "scan"
    np.testing.assert_array_equal(frames.array.compute(), U16)


def test_bot_pointing_inside_a_fragment_falls_back(tmp_path) -> None:
    ds = make_dataset(U16, transfer_syntax=uid.RLELossless, offset_table="bot")
    value = bytearray(ds.PixelData)
    entries = np.frombuffer(bytes(value[8:28]), dtype="<u4").copy()
    entries[1:] += 2  # increasing, in range, but not at item tags
    value[8:28] = entries.tobytes()
    ds.PixelData = bytes(value)
    path = tmp_path / "shifted-bot.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.warns(OffsetTableWarning):
        frames = dicom_dask.open_frames(path)
    np.testing.assert_array_equal(frames.array.compute(), U16)


def test_raw_and_default_colour(tmp_path) -> None:
    ybr = RNG.integers(0, 255, (2, 8, 10, 3), dtype=np.uint8)
    path = write_dicom(tmp_path / "ybr.dcm", ybr, photometric_interpretation="YBR_FULL")
    raw = dicom_dask.open_frames(path, raw=True).array.compute()
    np.testing.assert_array_equal(raw, ybr)
    rgb = dicom_dask.open_frames(path).array.compute()
    from pydicom.pixels import convert_color_space

    np.testing.assert_array_equal(rgb, convert_color_space(ybr, "YBR_FULL", "RGB"))


def test_saved_index_reopens_without_reading_the_header(tmp_path) -> None:
    arr, kwargs = CASES["empty-bot"]
    path = write_dicom(tmp_path / "nobot.dcm", arr, **kwargs)
    frames = dicom_dask.open_frames(path)
    frames.save_index(tmp_path / "nobot.json")
    again = dicom_dask.open_frames(path, index=tmp_path / "nobot.json")
    assert again.index.requests == 0
    assert again.manifest == frames.manifest
    assert again.store == frames.store
    assert again.header.SOPInstanceUID == frames.header.SOPInstanceUID
    np.testing.assert_array_equal(again.array.compute(), arr)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "name", ["native-le", "multi-fragment-bot", "bits-1-unaligned", "planar-1"]
)
def test_kerchunk_references_open_in_plain_zarr(tmp_path, name: str) -> None:
    arr, kwargs = CASES[name]
    path = write_dicom(tmp_path / f"{name}.dcm", arr, **kwargs)
    refs = dicom_dask.open_frames(path).to_kerchunk()
    json.dumps(refs)  # JSON-serialisable
    fs = fsspec.filesystem("reference", fo=refs)
    store = zarr.storage.FsspecStore(fs.get_mapper("").fs, read_only=True, path="")
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[...], arr)


def test_deflated_dataset_is_read_whole(tmp_path) -> None:
    ds = make_dataset(U16, transfer_syntax=uid.DeflatedExplicitVRLittleEndian)
    path = tmp_path / "deflated.dcm"
    ds.save_as(path, enforce_file_format=True)
    frames = dicom_dask.open_frames(path)
    assert frames.index.ranges.method == "inline"
    np.testing.assert_array_equal(frames.array.compute(), U16)
    np.testing.assert_array_equal(frames.zarr[...], U16)
    frames.save_index(tmp_path / "deflated.json")
    again = dicom_dask.open_frames(path, index=tmp_path / "deflated.json")
    assert again.manifest == frames.manifest
    np.testing.assert_array_equal(again.array.compute(), U16)


def test_backend_recorded_in_codec_configuration(tmp_path) -> None:
    jpeg = RNG.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    path = write_dicom(tmp_path / "jpeg.dcm", jpeg, transfer_syntax=uid.JPEGBaseline8Bit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = dicom_dask.open_frames(path)
        pinned = dicom_dask.open_frames(path, backend="pydicom")
    assert frames.codecs[-1]["configuration"]["backend"] == "imagecodecs"
    assert pinned.codecs[-1]["configuration"]["backend"] == "pydicom:pylibjpeg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(pinned.array.compute(), expected)


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "samples", "syntax"),
    [
        (np.uint16, 12, 1, uid.ExplicitVRLittleEndian),
        (np.int16, 12, 1, uid.ExplicitVRLittleEndian),
        (np.int16, 10, 1, uid.ImplicitVRLittleEndian),
        (np.uint8, 6, 3, uid.ExplicitVRLittleEndian),
        (np.int32, 20, 1, uid.ExplicitVRLittleEndian),
        (np.int16, 12, 1, uid.ExplicitVRBigEndian),  # not the fast path: pydicom decodes
    ],
)
def test_unused_high_bits_are_corrected_as_pydicom(
    tmp_path, monkeypatch, dtype, bits_stored, samples, syntax
):
    """Native frames whose Bits Stored < Bits Allocated, with garbage in the unused
    high bits: the direct reads (whole frames into the output, then corrected in
    place), partial reads, zarr and every frame equal pydicom's ``pixel_array``."""
    info = np.iinfo(dtype)
    shape = (4, 9, 11) + ((samples,) if samples > 1 else ())
    frames = RNG.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    ds = make_dataset(frames, transfer_syntax=syntax)
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    path = tmp_path / "masked.dcm"
    ds.save_as(path, enforce_file_format=True)
    expected = pydicom.dcmread(path).pixel_array
    expected = expected.astype(expected.dtype.newbyteorder("="))
    assert not np.array_equal(expected, frames)  # the garbage bits matter
    if syntax != uid.ExplicitVRBigEndian:  # corrected by dicom_dask itself
        from dicom_dask.chunks import decoders as _backends

        monkeypatch.setattr(_backends, "get_decoder", None)
    frames_obj = dicom_dask.open_frames(path)
    assert_eq(frames_obj.array, expected, check_graph=False)
    np.testing.assert_array_equal(frames_obj.array[1:3, 2:7].compute(), expected[1:3, 2:7])
    np.testing.assert_array_equal(frames_obj.zarr[...], expected)
    for i in range(len(expected)):
        np.testing.assert_array_equal(frames_obj.array[i].compute(), expected[i])


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "samples", "syntax", "near", "planar"),
    [
        (np.int16, 12, 1, uid.JPEGLSLossless, 0, False),  # signed: pydicom's sign correction
        (np.uint16, 16, 1, uid.JPEGLSNearLossless, 3, False),
        (np.uint8, 8, 3, uid.JPEGLSLossless, 0, False),
        (np.uint8, 8, 3, uid.JPEGLSLossless, 0, True),  # interleave mode 0: colour by plane
    ],
)
def test_jpegls_plugin_equals_pydicoms_own(
    tmp_path, dtype, bits_stored, samples, syntax, near, planar
):
    """JPEG-LS decodes through pydicom with imagecodecs' CharLS as the plugin (when
    installed): the same arrays as pydicom's pylibjpeg (or pyjpegls) plugin gives."""
    from pydicom.pixels import get_encoder, pixel_array

    from dicom_dask.chunks.decoders import available_backends

    signed = np.dtype(dtype).kind == "i"
    low, high = (
        (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1)
        if signed
        else (0, 2**bits_stored - 1)
    )
    shape = (3, 20, 18) + ((samples,) if samples > 1 else ())
    frames = RNG.integers(low, high, shape, endpoint=True).astype(dtype)
    options = {
        "rows": 20,
        "columns": 18,
        "samples_per_pixel": samples,
        "bits_allocated": np.dtype(dtype).itemsize * 8,
        "bits_stored": bits_stored,
        "pixel_representation": int(signed),
        "photometric_interpretation": "RGB" if samples == 3 else "MONOCHROME2",
        "planar_configuration": 0,
        "number_of_frames": 1,
    }
    if near:
        options["jls_error"] = near
    if planar:  # pydicom's encoder interleaves by sample: CharLS itself, by plane
        jpeg_ls = pytest.importorskip("jpeg_ls")
        encoded = [
            bytes(
                jpeg_ls.encode_array(np.ascontiguousarray(f.transpose(2, 0, 1)), interleave_mode=0)
            )
            for f in frames
        ]
    else:
        encoder = get_encoder(syntax)
        encoded = [bytes(encoder.encode(np.ascontiguousarray(f), **options)) for f in frames]
    ds = make_dataset(frames, transfer_syntax=syntax, encoded=encoded)
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    path = tmp_path / "jls.dcm"
    ds.save_as(path, enforce_file_format=True)
    # libjpeg refuses colour-by-plane streams as CharLS writes them; pyjpegls reads them
    expected = pixel_array(path, decoding_plugin="pyjpegls" if planar else "pylibjpeg")
    if near == 0:
        np.testing.assert_array_equal(expected, frames)
    backends = available_backends(syntax, bits_allocated=options["bits_allocated"])
    if importlib.util.find_spec("imagecodecs") is not None:
        assert backends[0] == "pydicom:imagecodecs"
    got = dicom_dask.open_frames(path).array.compute()
    np.testing.assert_array_equal(got, expected)
