"""The OpenSlide facade against openslide-python (OpenSlide 4 reads DICOM) on the same files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.errors import NoImagesError
from dicom_dask.testing import make_slide_dataset
from tests.conftest import REAL

openslide = pytest.importorskip("openslide")
WSI = sorted(p for p in (REAL / "wsi").glob("*") if p.suffix == ".dcm" or p.is_dir())
DOWNSAMPLES = (0.5, 1.0, 1.5, 1.99, 2.0, 2.01, 3.9, 4.0, 100.0)


def _pyramid(folder) -> None:
    """Three JPEG levels with edge tiles, a label and an overview, as one series."""
    yy, xx = np.mgrid[0:1000, 0:1300]
    base = np.stack([(xx // 3) % 256, (yy // 2) % 256, ((xx + yy) // 5) % 256], -1)
    base = base.astype(np.uint8)
    common = {"frame_of_reference": "1.2.3.4", "container_id": "C1", "study_uid": "1.2.3"}
    series = pydicom.uid.generate_uid()
    images = [(f"level{i}", base[:: 2**i, :: 2**i], "VOLUME", 0.00025 * 2**i) for i in range(3)]
    images += [
        ("label", base[:200, :300], "LABEL", 0.01),
        ("overview", base[::4, ::4], "OVERVIEW", 0.02),
    ]
    for name, matrix, kind, spacing in images:
        tile = (128, 128) if kind == "VOLUME" else matrix.shape[:2]
        ds = make_slide_dataset(
            matrix,
            tile=tile,
            image_type=kind,
            pixel_spacing=spacing,
            transfer_syntax=uid.JPEGBaseline8Bit,
            **common,
        )
        ds.SeriesInstanceUID = series
        ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)


def _first_file(path):
    return path if path.suffix == ".dcm" else sorted(path.glob("*.dcm"))[-1]


def _open_both(path):
    try:
        reference = openslide.OpenSlide(str(_first_file(path)))
    except openslide.OpenSlideError:
        reference = None
    try:
        return reference, dicom_dask.OpenSlide(path)
    except NoImagesError:
        return reference, None


def _same(a, b, what) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=what)


def _compare(reference, ours) -> None:
    assert ours.level_count == reference.level_count
    assert ours.dimensions == reference.dimensions
    assert ours.level_dimensions == reference.level_dimensions
    np.testing.assert_allclose(ours.level_downsamples, reference.level_downsamples)
    for ds in DOWNSAMPLES:
        assert ours.get_best_level_for_downsample(ds) == reference.get_best_level_for_downsample(ds)
    for key, value in reference.properties.items():
        if key.startswith("dicom.") or key in ("openslide.mpp-x", "openslide.mpp-y"):
            assert ours.properties[key].strip() == value.strip(), key
    assert ours.properties["openslide.vendor"] == reference.properties["openslide.vendor"]
    assert sorted(ours.associated_images) == sorted(reference.associated_images)
    for name, image in reference.associated_images.items():
        _same(ours.associated_images[name], image, name)
    for level, ds in enumerate(reference.level_downsamples):
        w, h = reference.level_dimensions[level]
        step = round(ds)
        for x, y, size in (
            (0, 0, (64, 48)),
            (-8 * step, -4 * step, (100, 60)),  # partly outside: transparent there
            ((w - 30) * step, (h - 20) * step, (64, 64)),  # over the right and bottom edges
            (17 * step, 33 * step, (200, 150)),  # across tile borders
        ):
            _same(
                ours.read_region((x, y), level, size),
                reference.read_region((x, y), level, size),
                f"level {level} at {(x, y)}",
            )
    _same(ours.get_thumbnail((120, 120)), reference.get_thumbnail((120, 120)), "thumbnail")


def test_synthetic_pyramid_equals_openslide(tmp_path) -> None:
    _pyramid(tmp_path)
    reference = openslide.OpenSlide(str(tmp_path / "level0.dcm"))
    with dicom_dask.OpenSlide(tmp_path) as ours:
        assert sorted(ours.associated_images) == ["label", "macro"]
        _compare(reference, ours)
        # a location off the level's grid is rounded down to it
        level = ours.slide.levels[1]
        got = np.asarray(ours.read_region((7, 9), 1, (50, 40)))
        np.testing.assert_array_equal(got[..., :3], level[4:44, 3:53].compute())
    with pytest.raises(ValueError, match="closed"):
        ours.read_region((0, 0), 0, (1, 1))


@pytest.mark.skipif(not WSI, reason="../shared/data/real is absent")
@pytest.mark.parametrize("path", WSI, ids=lambda p: p.name)
def test_real_slides(path) -> None:
    reference, ours = _open_both(path)
    if ours is None:  # a file with no pyramid level (a lone label): both refuse it
        assert reference is None
        return
    if reference is not None:
        _compare(reference, ours)
        return
    # OpenSlide refuses this file (JPEG-LS, 1-bit, SEG, a single frame...): our own arrays
    level = ours.slide.pyramid[0]
    expected = level.read_region((0, 0), level.matrix_shape[::-1])
    region = np.asarray(ours.read_region((0, 0), 0, ours.dimensions))
    assert region.shape == (*level.matrix_shape, 4)
    assert (region[..., 3] == 255).all() or not level.tiles_present.all()
    if expected.dtype == np.uint8 and expected.ndim == 3 and expected.shape[-1] == 3:
        np.testing.assert_array_equal(region[..., :3], expected)
    else:  # grey or labels: the same values in all three colour channels
        assert (region[..., 0] == region[..., 1]).all() and (region[..., 1] == region[..., 2]).all()
        bits = level.image.index.header.description.bits_stored
        if bits == 1:  # masks are shown black and white
            assert set(np.unique(region[..., 0])) <= {0, 255}
            np.testing.assert_array_equal(region[..., 0] == 255, np.squeeze(expected) != 0)
