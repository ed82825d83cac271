"""Real tiled files: total pixel matrices vs highdicom and a NumPy assembly of pydicom frames."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

import dicom_dask
from tests.conftest import REAL

WSI = sorted(p.relative_to(REAL).as_posix() for p in (REAL / "wsi").rglob("*.dcm"))
# highdicom's Image cannot assemble these (no Pixel Spacing / Optical Path Sequence, or
# segments as frames): they are checked against the NumPy assembly only, and SEGs
# against highdicom's Segmentation reader
HIGHDICOM_IMAGE_FAILS = {
    "wsi/cmu1_napari/label.dcm",
    "wsi/cmu1_napari/overview.dcm",
    "wsi/cmu1_napari/thumbnail.dcm",
    "wsi/ezwsi_camelyon_multiframe.dcm",
    "wsi/ezwsi_single_frame_wsi.dcm",
    "wsi/highdicom_seg_sm_dots_tiled_full.dcm",
    "wsi/highdicom_seg_sm_labelmap_palette.dcm",
}


def numpy_assembly(path: str) -> np.ndarray:
    """``(c, z, rows, columns[, s])`` from pydicom's frames, placed by the standard's rules."""
    ds = pydicom.dcmread(REAL / path)
    frames = ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1))
    if n == 1:
        frames = frames[None]
    th, tw = ds.Rows, ds.Columns
    rows, cols = int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns)
    ny, nx = -(-rows // th), -(-cols // tw)
    if ds.get("DimensionOrganizationType") == "TILED_SPARSE":
        positions = [
            (
                0,
                int(item.PlanePositionSlideSequence[0].RowPositionInTotalImagePixelMatrix) - 1,
                int(item.PlanePositionSlideSequence[0].ColumnPositionInTotalImagePixelMatrix) - 1,
            )
            for item in ds.PerFrameFunctionalGroupsSequence
        ]
        c = 1
    else:
        c = n // (ny * nx)
        positions = [(k // (ny * nx), (k // nx) % ny * th, k % nx * tw) for k in range(n)]
    out = np.zeros((c, 1, ny * th, nx * tw, *frames.shape[3:]), dtype=frames.dtype)
    for frame, (ch, r, col) in zip(frames, positions, strict=True):
        out[ch, 0, r : r + th, col : col + tw] = frame
    return out[:, :, :rows, :cols]


@pytest.mark.parametrize("path", WSI)
def test_total_pixel_matrix_equals_numpy_assembly(real_dir, path: str) -> None:
    level = dicom_dask.open_tiled(REAL / path, backend="pydicom")
    got = level.to_dask(squeeze=False).compute()
    expected = numpy_assembly(path)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    # the squeezed array and the zarr (virtual OME-Zarr) path agree
    if level.squeezed:
        np.testing.assert_array_equal(level.array.compute(), expected[0, 0])


def _highdicom_matrix(path: str, **region: int) -> np.ndarray:
    import highdicom as hd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "seg_sm" in path:
            seg = hd.seg.segread(REAL / path)
            if "labelmap" in path:
                return seg.get_total_pixel_matrix(combine_segments=True, as_indices=True, **region)
            got = seg.get_total_pixel_matrix(as_indices=True, **region)
            return np.moveaxis(got, -1, 0)[:, None]
        image = hd.imread(REAL / path)
        return image.get_total_pixel_matrix(
            apply_real_world_transform=False,
            apply_modality_transform=False,
            apply_voi_transform=False,
            apply_presentation_lut=False,
            apply_palette_color_lut=False,
            apply_icc_profile=False,
            dtype=image.pixel_array.dtype,
            as_indices=True,
            **region,
        )


HIGHDICOM_CHECKED = [p for p in WSI if p not in HIGHDICOM_IMAGE_FAILS or "seg_sm" in p]


@pytest.mark.parametrize("path", HIGHDICOM_CHECKED)
def test_total_pixel_matrix_equals_highdicom(real_dir, path: str) -> None:
    pytest.importorskip("highdicom")
    level = dicom_dask.open_tiled(REAL / path, backend="pydicom")
    got = level.array.compute()
    expected = _highdicom_matrix(path)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    # regions at random offsets equal highdicom's region reads
    rng = np.random.default_rng(7)
    rows, cols = level.matrix_shape
    for _ in range(4):
        h, w = (int(v) for v in rng.integers(1, [rows, cols], endpoint=True))
        y, x = int(rng.integers(0, rows - h + 1)), int(rng.integers(0, cols - w + 1))
        expected = _highdicom_matrix(
            path, row_start=y, row_end=y + h, column_start=x, column_end=x + w
        )
        if level.squeezed:
            region = level.read_region((x, y), (w, h))
            np.testing.assert_array_equal(region, expected)
            np.testing.assert_array_equal(level.array[y : y + h, x : x + w].compute(), expected)
        else:
            np.testing.assert_array_equal(
                level.array[..., y : y + h, x : x + w].compute(), expected
            )


def test_cmu1_folder_is_one_slide_with_associated_images(real_dir) -> None:
    slide = dicom_dask.open_slide(REAL / "wsi" / "cmu1_napari", backend="pydicom")
    assert len(slide.pyramid) == 1
    assert sorted(slide.associated) == ["label", "overview", "thumbnail"]
    assert slide.label is not None and slide.label.shape == (463, 387, 3)
    assert slide.overview is not None and slide.overview.shape == (431, 1280, 3)
    assert slide.thumbnail is not None and slide.thumbnail.shape == (768, 574, 3)
    expected = pydicom.dcmread(REAL / "wsi/cmu1_napari/label.dcm").pixel_array
    np.testing.assert_array_equal(slide.label.compute(), expected)
    assert slide.dimensions == [(2220, 2967)]
    assert slide.downsamples == [1.0]


def test_wsi_folder_lists_several_slides(real_dir) -> None:
    slides = dicom_dask.list_slides(REAL / "wsi")
    assert len(slides) >= 5
    with pytest.raises(dicom_dask.errors.NoImagesError, match="select="):
        dicom_dask.open_slide(REAL / "wsi")
    cmu = next(i for i, s in enumerate(slides) if s["container_identifier"] == "Unknown")
    slide = dicom_dask.open_slide(REAL / "wsi", select=cmu)
    assert slide.dimensions == [(2220, 2967)]


def test_geometry_matches_highdicom(real_dir) -> None:
    hd = pytest.importorskip("highdicom")
    path = REAL / "wsi/cmu1_napari/volume.dcm"
    level = dicom_dask.open_tiled(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    origin = ds.TotalPixelMatrixOriginSequence[0]
    transformer = hd.spatial.PixelToReferenceTransformer(
        image_position=(
            float(origin.XOffsetInSlideCoordinateSystem),
            float(origin.YOffsetInSlideCoordinateSystem),
            0.0,
        ),
        image_orientation=[float(v) for v in ds.ImageOrientationSlide],
        pixel_spacing=[
            float(v)
            for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        ],
    )
    indices = np.array([[0, 0], [10, 0], [0, 25], [2219, 2966], [123, 456]])
    expected = transformer(indices)
    got = level.map_pixel_indices_to_slide_coordinates(indices)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    back = level.map_slide_coordinates_to_pixel_indices(got)
    np.testing.assert_allclose(back, indices, atol=1e-6)
