"""Cohorts in a bucket: ``catalog`` lists every stack and slide in one pass (on the workers of
a cluster when one is active), each row (also after Parquet) and each listing entry opens
with no header request, and the arrays are those of the local opens.

A moto S3 server behind the counting proxy holds the real dev-set series, a real slide with
its associated images, lone label and segmentation instances, a synthetic slide, a
synthetic 300-file series and a stray text file; the same tree is read locally.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dicom_dask
from dicom_dask.errors import DicomDaskError, StaleIndexError
from dicom_dask.testing import loopback, series_positions, write_series, write_slide
from tests.conftest import REAL, process_cluster
from tests.servers import _server

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
s3fs = pytest.importorskip("s3fs")
pytestmark = pytest.mark.skipif(not REAL.exists(), reason="../shared/data/real is absent")

BIG = 300  # files of the synthetic series
BUCKET = "cohort"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    shutil.copytree(REAL / "volume_series", root / "series")
    for name in ("dcmqi_legacy_ct_24x38x3.dcm", "parametric_map_float.dcm"):  # multi-frame
        shutil.copyfile(REAL / "enhanced" / name, root / "series" / name)
    shutil.copytree(REAL / "wsi" / "cmu1_napari", root / "slides" / "cmu1")
    for name in ("ezwsi_single_frame_wsi.dcm", "highdicom_seg_sm_dots_tiled_full.dcm"):
        shutil.copyfile(REAL / "wsi" / name, root / "slides" / name)
    rng = np.random.default_rng(5)
    matrix = rng.integers(0, 255, (384, 512, 3), dtype=np.uint8)
    write_slide(root / "slides" / "synthetic.dcm", matrix, tile=(128, 128))
    volume = rng.integers(0, 4000, (BIG, 8, 6), dtype=np.uint16)
    write_series(root / "big", volume, positions=series_positions(BIG, slice_spacing=1.5))
    (root / "README.txt").write_text("not a DICOM file\n")
    return root


@pytest.fixture(scope="module")
def bucket(tree: Path) -> Iterator[tuple[loopback.Proxy, dict[str, Any]]]:
    with _server(loopback.moto_server) as moto, loopback.Proxy(moto.endpoint) as proxy:
        options = {"endpoint_url": proxy.endpoint, "key": "testing", "secret": "testing"}
        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        fs.put(f"{tree}/", f"{BUCKET}/", recursive=True)
        yield proxy, options


@pytest.fixture(scope="module")
def local(tree: Path) -> list[dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dicom_dask.list_series(tree) + dicom_dask.list_slides(tree)


def _files(tree: Path) -> int:
    return sum(1 for p in tree.rglob("*") if p.is_file())


def _key(entry: Any) -> tuple[str, str, str, int, tuple[int, ...]]:
    return (
        str(entry["kind"]),
        str(entry["series_instance_uid"]),
        str(entry["stack"]) if entry["kind"] == "volume" else "",
        int(entry["files"]),
        tuple(int(v) for v in entry["shape"]),
    )


def _catalog(bucket: tuple[loopback.Proxy, dict[str, Any]]) -> tuple[Any, Any, list[Any]]:
    proxy, options = bucket
    proxy.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df, errors = dicom_dask.catalog(f"s3://{BUCKET}/", storage_options=options, errors=True)
    return df, errors, proxy.reset()


def _no_request_at_open(row: Any, log: list[loopback.LoggedRequest]) -> None:
    if row["kind"] == "segmentation":  # unaligned 1-bit frames: their pixel data are read
        # whole at open, by every opener (tiled.frame_chunks); never a header
        assert all(r.method == "GET" and not str(r.range).startswith("bytes=0-") for r in log)
    else:
        assert log == [], row["urls"][:2]


def _arrays(opened: Any) -> list[np.ndarray]:
    if isinstance(opened, dicom_dask.Volume):
        return [opened.array.compute()]
    if isinstance(opened, dicom_dask.Slide):
        return [a.compute() for a in opened.levels]
    return [opened.array.compute()]


def test_catalog_lists_what_the_listings_give_in_one_request_per_file(tree, bucket, local) -> None:
    df, errors, log = _catalog(bucket)
    listing = sum(1 for r in log if "list-type" in r.path)
    per_file = Counter(r.path for r in log if "list-type" not in r.path)
    # no file is asked for its size: the listing gave it
    assert sum(r.method == "HEAD" for r in log) <= 2, Counter(r.method for r in log)
    # one GET per file of the 300-file series (and of every file whose header fits the
    # first 256 KiB read); what goes beyond is the header reader's own continuation (the
    # end of the encapsulated slides' pixel data): at most 5 (issue 31, acceptance 2)
    assert all(per_file[f"/{BUCKET}/big/{p.name}"] == 1 for p in (tree / "big").iterdir())
    assert len(log) <= _files(tree) + listing + 5, sorted(p for p, n in per_file.items() if n > 1)
    assert sorted(map(_key, (row for _, row in df.iterrows()))) == sorted(map(_key, local))
    kinds = Counter(df["kind"])
    assert kinds == Counter(e["kind"] for e in local)
    assert kinds["slide"] == 2 and kinds["label"] == 1 and kinds["segmentation"] == 1
    assert (df.loc[df["kind"] == "volume", "files"] == BIG).sum() == 1
    cmu = df[df["urls"].map(lambda u: any("cmu1/volume.dcm" in x for x in u))].iloc[0]
    assert cmu["kind"] == "slide" and cmu["files"] == 4 and list(cmu["shape"]) == [2967, 2220, 3]
    assert set(df["modality"]) >= {"CT", "MR", "SM", "SEG"}
    # the stray file is in the second table, with the reason
    (readme,) = errors[errors["url"].str.endswith("README.txt")].itertuples()
    assert readme.error == "NotDicomError" and "not a DICOM" in readme.reason


def test_rows_open_after_parquet_with_no_request_and_equal_the_local_opens(
    bucket, local, tmp_path
) -> None:
    proxy, options = bucket
    df, _, _ = _catalog(bucket)
    df.to_parquet(tmp_path / "cohort.parquet")
    back = pd.read_parquet(tmp_path / "cohort.parquet")
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    by_key = {_key(e): e for e in local}
    compared = 0
    for i in range(len(back)):
        row = back.iloc[i]
        proxy.reset()
        try:
            opened = dicom_dask.open_entry(row, storage_options=options)
        except DicomDaskError as exc:  # a stack the local open refuses too
            assert proxy.reset() == []
            with pytest.raises(type(exc)):
                dicom_dask.open_entry(by_key[_key(row)])
            continue
        _no_request_at_open(row, proxy.reset())
        expected = dicom_dask.open_entry(by_key[_key(row)])
        assert type(opened) is type(expected)
        for got, want in zip(_arrays(opened), _arrays(expected), strict=True):
            np.testing.assert_array_equal(got, want)
        compared += 1
    assert compared >= len(back) - 1
    # the stored index is also what open_volume / open_slide take
    volume_row = back[back["files"] == BIG].iloc[0]
    proxy.reset()
    volume = dicom_dask.open_volume(
        index=json.loads(volume_row["index"]), storage_options=options, verify=False
    )
    assert proxy.reset() == [] and volume.shape == (BIG, 8, 6)


def test_listing_entries_open_without_reading_the_folder_again(bucket, tree) -> None:
    proxy, options = bucket
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slides = dicom_dask.list_slides(f"s3://{BUCKET}/slides/", storage_options=options)
        series = dicom_dask.list_series(f"s3://{BUCKET}/series/", storage_options=options)
    for entry in slides + series:
        assert entry["urls"] and entry["kind"] in ("volume", "slide", "label", "segmentation")
        proxy.reset()
        opened = dicom_dask.open_entry(entry, storage_options=options)
        _no_request_at_open(entry, proxy.reset())
        if entry["kind"] == "label":  # listed as a label, opened as one image
            assert isinstance(opened, dicom_dask.Level)
            assert opened.array.shape == tuple(entry["shape"])
    # a plain mapping of kind and urls reads those files' headers only
    (big,) = [e for e in dicom_dask.list_series(tree / "big")]
    proxy.reset()
    urls = [f"s3://{BUCKET}/big/{Path(u).name}" for u in big["urls"][:20]]
    opened = dicom_dask.open_entry({"kind": "volume", "urls": urls}, storage_options=options)
    assert opened.shape[0] == 20
    assert {r.path.rsplit("/", 1)[-1] for r in proxy.reset()} <= {Path(u).name for u in urls}


def test_a_rewritten_file_is_caught_when_verified(tree, tmp_path) -> None:
    folder = tmp_path / "series"
    shutil.copytree(tree / "series" / "ct_3slice", folder)
    df = dicom_dask.catalog(folder)
    victim = folder / "02.dcm"
    victim.write_bytes(victim.read_bytes() + b"\0\0")
    dicom_dask.open_entry(df.iloc[0])  # trusted: nothing is read at open
    with pytest.raises(StaleIndexError, match=r"02\.dcm"):
        dicom_dask.open_entry(df.iloc[0], verify=True)


@pytest.mark.slow
def test_headers_are_read_on_the_workers_of_a_cluster(bucket, local) -> None:
    distributed = pytest.importorskip("distributed")
    threaded, _, threaded_log = _catalog(bucket)
    with process_cluster() as client:
        with distributed.get_task_stream(client) as stream:
            on_cluster, errors, log = _catalog(bucket)
        workers = set(client.scheduler_info()["workers"])
    names = Counter(
        str(t["key"][0] if isinstance(t["key"], tuple) else t["key"]) for t in stream.data
    )
    assert any("_read_batch" in name for name in names), names
    assert {t["worker"] for t in stream.data} <= workers and len(stream.data) >= 2
    assert sorted(map(_key, (r for _, r in on_cluster.iterrows()))) == sorted(map(_key, local))
    assert on_cluster["index"].tolist() == threaded["index"].tolist()
    # the workers ask no DICOM file for its size either (the stray README.txt, too short for
    # a DICOM header, is looked at once more), and as many GETs as the threads made
    # give or take a header read in two blocks where a batch boundary split what one
    # thread had read together
    assert not [r for r in log if r.method == "HEAD" and r.path.endswith(".dcm")]
    assert abs(len(log) - len(threaded_log)) <= 2, (len(log), len(threaded_log))
    assert errors["url"].str.endswith("README.txt").any()
