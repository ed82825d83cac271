"""One ``WriteOptions`` shared by every writer, parsed once; one rule for the worker count.

Every writer takes ``options=`` (a `WriteOptions` or a mapping) beside its keywords of
the same names, which take precedence; the same options object works for all of them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pydicom
import pytest
from pydicom import uid

import dicom_dask
from dicom_dask.errors import DestinationExistsError, WrongInputError
from dicom_dask.integrations.writers.common import compute_threads
from dicom_dask.integrations.writers.options import WriteOptions
from dicom_dask.testing import make_slide_dataset, series_positions, write_series

WRITERS = (
    dicom_dask.to_dicom_slide,
    dicom_dask.to_dicom_seg,
    dicom_dask.to_dicom_pmap,
    dicom_dask.to_dicom_series,
    dicom_dask.to_ome_zarr,
)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("slide")
    picture = np.random.default_rng(5).integers(0, 255, (256, 384, 3), dtype=np.uint8)
    ds = make_slide_dataset(picture, tile=(128, 128), transfer_syntax=uid.ExplicitVRLittleEndian)
    ds.save_as(root / "l0.dcm", enforce_file_format=True)
    return dicom_dask.open_slide(root)


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("ct")
    volume = np.random.default_rng(6).integers(0, 2000, (3, 32, 24), dtype=np.uint16)
    write_series(root, volume, positions=series_positions(3, slice_spacing=2.0))
    return dicom_dask.open_volume(root)


def test_coerce_order_keywords_options_defaults() -> None:
    given = WriteOptions(overwrite=True, progress=False, transfer_syntax="rle", quality=70)
    opts = WriteOptions.coerce(
        given,
        defaults={"transfer_syntax": "jpeg", "quality": 90, "chunk_edge": 4096},
        overwrite=None,  # a writer's ``overwrite=False`` leaves the options' True
        quality=50,
    )
    assert opts.overwrite and not opts.progress
    assert (opts.transfer_syntax, opts.quality, opts.chunk_edge) == ("rle", 50, 4096)
    assert (opts.offset_table, opts.keep_identifiers) == ("auto", False)
    from_mapping = WriteOptions.coerce({"overwrite": True}, defaults={"quality": 90})
    assert from_mapping == WriteOptions(overwrite=True, quality=90)
    assert WriteOptions.coerce(None) == WriteOptions()


def test_coerce_refuses_unknown_options() -> None:
    with pytest.raises(WrongInputError, match=r"unknown write option\(s\) 'overwrit'"):
        WriteOptions.coerce({"overwrit": True})
    with pytest.raises(WrongInputError, match="expected a WriteOptions or a mapping"):
        WriteOptions.coerce(True)  # type: ignore[arg-type]


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_every_writer_takes_the_shared_options(writer: Any) -> None:
    """The trailing keywords of every writer, and ``options=`` for all of them."""
    params = inspect.signature(writer).parameters
    for name in ("storage_options", "overwrite", "progress", "options"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_one_options_object_serves_every_writer(slide: Any, ct: Any, tmp_path: Path) -> None:
    """The same ``WriteOptions(overwrite=True, progress=False)`` replaces what each
    writer finds at its destination; without it, each refuses."""
    opts = WriteOptions(overwrite=True, progress=False)
    labels = da.from_array((np.arange(256 * 384).reshape(256, 384) % 3 == 0).astype(np.uint8))
    scores = da.from_array(np.linspace(0, 1, 256 * 384, dtype=np.float32).reshape(256, 384))
    calls = {
        "slide": lambda **kw: dicom_dask.to_dicom_slide(slide, tmp_path / "slide", levels=1, **kw),
        "seg": lambda **kw: dicom_dask.to_dicom_seg(labels, tmp_path / "s.dcm", like=slide, **kw),
        "pmap": lambda **kw: dicom_dask.to_dicom_pmap(scores, tmp_path / "p.dcm", like=slide, **kw),
        "series": lambda **kw: dicom_dask.to_dicom_series(ct, tmp_path / "series", **kw),
        "zarr": lambda **kw: dicom_dask.to_ome_zarr(slide, tmp_path / "z.ome.zarr", **kw),
    }
    for call in calls.values():
        call(progress=False)
        with pytest.raises(DestinationExistsError):
            call(progress=False)
        call(options=opts)  # replaces it
        call(options={"overwrite": True, "progress": False})  # a mapping too


def test_slide_takes_transfer_syntax_and_offset_table_from_options(
    slide: Any, tmp_path: Path
) -> None:
    opts = WriteOptions(transfer_syntax="rle", offset_table="eot", progress=False)
    (level0,) = dicom_dask.to_dicom_slide(slide, tmp_path / "a", levels=1, options=opts)
    ds = pydicom.dcmread(level0, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == uid.RLELossless
    assert "ExtendedOffsetTable" in pydicom.dcmread(level0)
    # a keyword given wins over the options
    (level0,) = dicom_dask.to_dicom_slide(
        slide, tmp_path / "b", levels=1, transfer_syntax="explicit", options=opts
    )
    ds = pydicom.dcmread(level0, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian


def test_ome_zarr_keeps_identifiers_from_options(slide: Any, tmp_path: Path) -> None:
    import zarr

    dicom_dask.to_ome_zarr(slide, tmp_path / "a.ome.zarr", progress=False)
    assert "dicom_dask" not in zarr.open_group(tmp_path / "a.ome.zarr").attrs
    opts = WriteOptions(keep_identifiers=True, progress=False)
    dicom_dask.to_ome_zarr(slide, tmp_path / "b.ome.zarr", options=opts)
    kept: Any = zarr.open_group(tmp_path / "b.ome.zarr").attrs["dicom_dask"]
    assert "header" in kept


def test_worker_count_rule() -> None:
    """dask's ``num_workers`` when set (it sizes dask's pool), else
    ``dicom_dask.config.threads()``."""
    with dicom_dask.config.set(threads=5):
        assert compute_threads() == 5
        with dask.config.set(num_workers=3):
            assert compute_threads() == 3
    with dask.config.set(num_workers=None):
        assert compute_threads() == dicom_dask.config.threads()
