"""PatchSampler: patches equal slices of the level array; each tile is read once per pass."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import uid

import dicom_dask
from dicom_dask.chunks.reader import ManifestArray
from dicom_dask.testing import make_slide_dataset, write_slide

ROWS, COLS, TILE = 300, 420, 64


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    rng = np.random.default_rng(2)
    matrix = rng.integers(0, 255, (ROWS, COLS, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("patches") / "s.dcm"
    write_slide(path, matrix, tile=(TILE, TILE), transfer_syntax=uid.RLELossless)
    return dicom_dask.open_slide(path), matrix


@pytest.fixture
def fetched(monkeypatch):
    """Every chunk the reader fetches, counted."""
    seen: Counter = Counter()
    original = ManifestArray._fetch

    def counting(self, wanted):
        seen.update(item[0] for item in wanted)
        return original(self, wanted)

    monkeypatch.setattr(ManifestArray, "_fetch", counting)
    return seen


def _expected(matrix, x, y, w, h, p, fill=0):
    padded = np.pad(matrix, ((p + h, p + h), (p + w, p + w), (0, 0)), constant_values=fill)
    return padded[y + h : y + 2 * h + 2 * p, x + w : x + 2 * w + 2 * p]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.tuples(st.integers(8, 90), st.integers(8, 90)),
    stride=st.tuples(st.integers(8, 90), st.integers(8, 90)),
    padding=st.integers(0, 24),
    box=st.tuples(
        st.integers(0, COLS - 100),
        st.integers(0, ROWS - 100),
        st.integers(90, 100),
        st.integers(90, 100),
    ),
)
def test_patches_equal_level_slices(slide, fetched, size, stride, padding, box) -> None:
    s, matrix = slide
    sampler = dicom_dask.PatchSampler(s, size, stride=stride, padding=padding, bbox=box)
    (w, h), p = size, padding
    fetched.clear()
    patches = list(sampler)
    assert len(patches) == len(sampler) > 0
    assert all(count == 1 for count in fetched.values()), "a tile was read twice in one pass"
    assert sampler.tiles_read == len(fetched)
    for patch in patches:
        assert box[0] <= patch.x <= box[0] + box[2] - w and box[1] <= patch.y <= box[1] + box[3] - h
        np.testing.assert_array_equal(patch.pixels, _expected(matrix, patch.x, patch.y, w, h, p))
    stacked = sampler.to_dask()
    assert stacked.shape == (len(sampler), h + 2 * p, w + 2 * p, 3)
    np.testing.assert_array_equal(stacked.compute(), np.stack([q.pixels for q in patches]))
    np.testing.assert_array_equal(sampler.positions, [(q.x, q.y) for q in patches])


def test_overlapping_patches_read_every_tile_once(slide, fetched) -> None:
    s, _matrix = slide
    sampler = dicom_dask.PatchSampler(s, 96, stride=40, padding=16)
    fetched.clear()
    n = sum(1 for _ in sampler)
    assert n == len(sampler) == len(range(0, COLS - 96 + 1, 40)) * len(range(0, ROWS - 96 + 1, 40))
    tiles = -(-ROWS // TILE) * -(-COLS // TILE)
    assert len(fetched) == tiles and set(fetched.values()) == {1}
    # the dask array shares each tile row's task between the chunks that need it
    fetched.clear()
    stacked = sampler.to_dask().compute(scheduler="threads")
    assert stacked.shape[0] == n
    assert len(fetched) == tiles and set(fetched.values()) == {1}


def test_tissue_mask_from_the_lowest_level(tmp_path) -> None:
    matrix = np.full((512, 512, 3), 245, dtype=np.uint8)  # glass
    matrix[100:300, 200:450] = (180, 90, 150)  # tissue
    folder = tmp_path / "slide"
    folder.mkdir()
    for i, m in enumerate((matrix, matrix[::4, ::4])):
        ds = make_slide_dataset(
            m,
            tile=(64, 64),
            transfer_syntax=uid.RLELossless,
            pixel_spacing=0.00025 * 4**i,
            frame_of_reference="1.2.3",
            container_id="C",
            study_uid="1.2.4",
        )
        ds.SeriesInstanceUID = "1.2.5"
        ds.save_as(folder / f"l{i}.dcm", enforce_file_format=True)
    s = dicom_dask.open_slide(folder)
    lazy = dicom_dask.tissue_mask(s.levels[-1])
    assert hasattr(lazy, "dask") and lazy.shape == (128, 128)
    sampler = dicom_dask.PatchSampler(s, 50, mask="tissue", min_coverage=0.9)
    assert len(sampler) > 0
    for x, y in sampler.positions:
        assert y >= 100 and y + 50 <= 300 + 4 and x >= 200 and x + 50 <= 450 + 4
    everything = dicom_dask.PatchSampler(s, 50)
    assert len(everything) == 100 > len(sampler)
    explicit = dicom_dask.PatchSampler(s, 50, mask=np.asarray(lazy), min_coverage=0.9)
    np.testing.assert_array_equal(explicit.positions, sampler.positions)


def test_tissue_mask_refuses_a_slide_and_names_the_level_to_pass(tmp_path) -> None:
    from dicom_dask.errors import WrongInputError

    matrix = np.full((128, 128, 3), 245, dtype=np.uint8)
    write_slide(tmp_path / "s.dcm", matrix, tile=(64, 64), transfer_syntax=uid.RLELossless)
    s = dicom_dask.open_slide(tmp_path / "s.dcm")
    with pytest.raises(WrongInputError, match=r"not a Slide: pass slide\.levels\[-1\]"):
        dicom_dask.tissue_mask(s)
    with pytest.raises(WrongInputError, match=r"got shape \(4, 128, 128\)"):
        dicom_dask.tissue_mask(np.zeros((4, 128, 128), dtype=np.uint8))
    with pytest.raises(WrongInputError, match="not str"):
        dicom_dask.tissue_mask("slide.dcm")
    from_level = dicom_dask.tissue_mask(s.pyramid[0])  # a Level is one level's pixels
    assert from_level.shape == (128, 128) and not from_level.any().compute()


def test_errors(slide) -> None:
    s, _ = slide
    with pytest.raises(ValueError, match="size"):
        dicom_dask.PatchSampler(s, 0)
    with pytest.raises(ValueError, match="unknown mask"):
        dicom_dask.PatchSampler(s, 32, mask="fat")
    with pytest.raises(ValueError, match="needs the Slide"):
        dicom_dask.PatchSampler(s.pyramid[0], 32, mask="tissue")
    empty = dicom_dask.PatchSampler(s, 32, bbox=(0, 0, 10, 10))
    assert len(empty) == 0 and list(empty) == [] and empty.to_dask().shape == (0, 32, 32, 3)
