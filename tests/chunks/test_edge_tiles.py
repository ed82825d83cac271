"""Slides whose edge tiles are stored at the size the total pixel matrix leaves them.

Some scanners encode the last tile column and row of a TILED_FULL slide cropped (a
42-pixel-wide JPEG where tiles are 64 wide); pydicom and OpenSlide refuse them. Every read
path pastes such a tile in place (the rest of its cell reads as the fill value) with one
``CroppedTileWarning`` per file; a cropped tile anywhere else, or cropped to another size,
stays a ``CorruptFrameError`` naming the file, the frame and the sizes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import fsspec
import imagecodecs
import numpy as np
import pytest
import zarr
from pydicom import uid

import dicom_dask
from dicom_dask.errors import CorruptFrameError, CroppedFrameError, CroppedTileWarning
from dicom_dask.integrations.facade import OpenSlide
from dicom_dask.testing.synthetic import encode_frame, write_slide
from tests.zarr_own import ZARR_OWN

#: 3 x 3 tiles of 64: the last tile row covers 22 rows, the last tile column 42 columns.
ROWS, COLS, TILE = 150, 170, 64
GRID = (-(-ROWS // TILE), -(-COLS // TILE))
FILL = 255


def _matrix() -> np.ndarray:
    rng = np.random.default_rng(29)
    base = rng.integers(0, 255, size=(ROWS // 8 + 1, COLS // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 8, 0), 8, 1)[:ROWS, :COLS]


def _write(folder: Path, sizes: dict[tuple[int, int], tuple[int, int]]) -> tuple[str, np.ndarray]:
    """A slide whose tile ``(r, c)`` is encoded at ``sizes[(r, c)]`` (default: the part of
    the matrix it covers, i.e. edge tiles cropped), and the level it should read as."""
    folder.mkdir(parents=True, exist_ok=True)
    matrix = _matrix()
    expected = np.full((GRID[0] * TILE, GRID[1] * TILE, 3), FILL, dtype=np.uint8)
    tiles = []
    for r in range(GRID[0]):
        for c in range(GRID[1]):
            part = matrix[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            h, w = sizes.get((r, c), part.shape[:2])
            cell = np.zeros((TILE, TILE, 3), dtype=np.uint8)
            cell[: part.shape[0], : part.shape[1]] = part
            tile = np.ascontiguousarray(cell[:h, :w])
            encoded = encode_frame(tile, uid.JPEGBaseline8Bit)
            tiles.append(encoded)
            decoded = imagecodecs.jpeg8_decode(encoded, colorspace="YCbCr", outcolorspace="RGB")
            expected[r * TILE : r * TILE + h, c * TILE : c * TILE + w] = decoded
    path = write_slide(folder / "slide.dcm", matrix, tile=(TILE, TILE), encoded_tiles=tiles)
    return path, expected[:ROWS, :COLS]


def _zarr_level(path: str, config: dict[str, Any]) -> zarr.Array:
    store = dicom_dask.open_slide(path, fill_value=FILL).store
    with zarr.config.set(config):
        return zarr.open_group(store, mode="r")["0"]


def _kerchunk_level(path: str, zarr_format: int) -> zarr.Array:
    refs = dicom_dask.to_kerchunk(path, kind="slide", zarr_format=zarr_format)
    fs = fsspec.filesystem("reference", fo=refs, asynchronous=True)
    store = zarr.storage.FsspecStore(fs, read_only=True, path="")
    group = zarr.open_group(store, mode="r", zarr_format=zarr_format)
    return group["0"] if zarr_format == 3 else group["0/image"]  # v2: the numcodecs codec


def _read(how: str, path: str) -> np.ndarray:
    """Level 0 of ``path``, ``(rows, columns, 3)``, read the way ``how`` names."""
    if how == "dask":
        return dicom_dask.open_slide(path, fill_value=FILL).levels[0].compute()
    if how == "read_region":
        return dicom_dask.open_slide(path, fill_value=FILL).read_region((0, 0), 0, (COLS, ROWS))
    if how == "openslide":
        image = OpenSlide(path, fill_value=FILL).read_region((0, 0), 0, (COLS, ROWS))
        return np.asarray(image)[..., :3]
    if how == "slide.zarr":
        level = dicom_dask.open_slide(path, fill_value=FILL).zarr["0"]
    elif how == "zarr-own":  # zarr's own pipeline: the codec's partial decoding
        level = _zarr_level(path, ZARR_OWN)
    elif how == "zarr-own-batches":  # ... several chunks per call
        level = _zarr_level(path, {**ZARR_OWN, "codec_pipeline.batch_size": 4})
    elif how.startswith("kerchunk"):
        level = _kerchunk_level(path, 2 if how.endswith("v2") else 3)
    else:
        raise AssertionError(how)
    return np.moveaxis(level[...], 0, -1)


PATHS = [
    "dask",
    "read_region",
    "openslide",
    "slide.zarr",
    "zarr-own",
    "zarr-own-batches",
    "kerchunk",
    "kerchunk-v2",
]


@pytest.mark.parametrize("how", PATHS)
def test_cropped_edge_tiles_are_pasted_in_place(tmp_path: Path, how: str) -> None:
    path, expected = _write(tmp_path, {})
    with pytest.warns(CroppedTileWarning) as record:
        got = _read(how, path)
    np.testing.assert_array_equal(got, expected)
    cropped = [w for w in record if issubclass(w.category, CroppedTileWarning)]
    assert len(cropped) == 1, [str(w.message) for w in cropped]  # one per file, not per tile
    message = str(cropped[0].message)
    assert "where Rows x Columns is 64 x 64" in message
    assert message.startswith(path) or how == "kerchunk-v2"  # numcodecs: the file is unknown


@pytest.mark.parametrize("how", PATHS)
@pytest.mark.parametrize(
    ("tile", "size"),
    [
        ((0, 0), (64, 42)),  # inside the matrix, at the size the last column has
        ((1, 1), (22, 64)),
        ((0, 2), (64, 30)),  # the last column, but narrower than what the matrix leaves
        ((2, 0), (21, 64)),
    ],
    ids=["inside-narrow", "inside-short", "edge-too-narrow", "edge-too-short"],
)
def test_other_cropped_tiles_are_corrupt(
    tmp_path: Path, how: str, tile: tuple[int, int], size: tuple[int, int]
) -> None:
    if how == "kerchunk-v2" and tile[0] < GRID[0] - 1 and tile[1] < GRID[1] - 1:
        pytest.skip("a numcodecs codec is not told where its chunk lies: sizes only")
    path, _ = _write(tmp_path, {tile: size})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CroppedTileWarning)  # the other, good edge tiles
        with pytest.raises(CorruptFrameError) as info:
            _read(how, path)
    message = str(info.value)
    assert isinstance(info.value, CroppedFrameError)
    assert f"shape {(*size, 3)}, expected (64, 64, 3)" in message
    if how == "kerchunk-v2":
        return
    assert path in message
    # the frame: the dask reader names the tile, zarr the chunk's key
    assert (
        f"y={tile[0]}, x={tile[1]} (" in message or f"chunk '0/c/0/{tile[0]}/{tile[1]}'" in message
    )


def test_crop_edges_writes_what_scanners_write(tmp_path: Path) -> None:
    """``write_slide(..., crop_edges=True)`` encodes edge tiles cropped, as `_write` does."""
    _, expected = _write(tmp_path, {})
    path = write_slide(tmp_path / "cropped.dcm", _matrix(), tile=(TILE, TILE), crop_edges=True)
    with pytest.warns(CroppedTileWarning):
        np.testing.assert_array_equal(dicom_dask.open_slide(path).levels[0].compute(), expected)
    with pytest.raises(ValueError, match="crop_edges"):
        write_slide(
            tmp_path / "native.dcm",
            _matrix(),
            transfer_syntax=uid.ExplicitVRLittleEndian,
            crop_edges=True,
        )


def test_pydicom_backend_reads_cropped_edge_tiles(tmp_path: Path) -> None:
    """pydicom decodes a frame only at *Rows* x *Columns*: with ``backend="pydicom"`` a
    JPEG codestream smaller than that is decoded at its own size and then placed (or
    refused) like any other cropped frame."""
    path, expected = _write(tmp_path / "edges", {})
    slide = dicom_dask.open_slide(path, backend="pydicom")
    assert slide.pyramid[0]._codecs("yxs")[-1]["configuration"]["backend"].startswith("pydicom")
    with pytest.warns(CroppedTileWarning):
        got = slide.levels[0].compute()
    # libjpeg (pydicom's plugin) and libjpeg-turbo may round a few values differently
    assert np.abs(got.astype(np.int16) - expected.astype(np.int16)).max() <= 16
    path, _ = _write(tmp_path / "inside", {(1, 1): (64, 42)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CroppedTileWarning)  # the good edge tiles
        with pytest.raises(CroppedFrameError, match=r"y=1, x=1 .*shape \(64, 42, 3\)"):
            dicom_dask.open_slide(path, backend="pydicom").read_region((0, 0), 0, (COLS, ROWS))


def test_cropped_frame_error_pickles_without_the_pixels(tmp_path: Path) -> None:
    """Raised in a dask worker process, the error travels as its message (and type)."""
    import pickle

    path, _ = _write(tmp_path, {(0, 0): (64, 42)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CroppedTileWarning)
        with pytest.raises(CroppedFrameError) as info:
            dicom_dask.open_slide(path).levels[0].compute()
    assert info.value.frame is None  # a re-raised error: the decoded frame stays behind
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is CroppedFrameError and str(again) == str(info.value)
    assert again.frame is None
