"""Trust: indexes bound to the file they describe, credentials never echoed or saved."""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import pickle
import shutil
import traceback
import warnings
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

import dicom_dask
from dicom_dask.chunks.sidecar import FORMAT_VERSION
from dicom_dask.errors import (
    CredentialsWarning,
    DicomDaskError,
    ManifestError,
    ReadError,
    StaleIndexError,
)
from dicom_dask.frames.storage import redact, strip_credentials
from dicom_dask.integrations.kerchunk import check_references, to_kerchunk
from dicom_dask.testing import loopback
from tests.conftest import REAL
from tests.servers import _server

MR = REAL / "misc" / "MR_small.dcm"
CT = REAL / "misc" / "CT_small.dcm"
JPEG = REAL / "codecs" / "jpeg_baseline" / "SC_rgb_dcmtk_+eb+cy+s2.dcm"
USER, PASSWORD = "alice", "s3cret-Pa55"
pytestmark = pytest.mark.skipif(not MR.exists(), reason="real data not found")


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _index(path: Path, out: Path) -> dict[str, Any]:
    dicom_dask.open_frames(path).save_index(out)
    return json.loads(out.read_text())


# -- an index is bound to its file ---------------------------------------------------------
def test_index_records_what_identifies_the_file(tmp_path) -> None:
    path = _copy(MR, tmp_path / "mr.dcm")
    doc = _index(path, tmp_path / "i.json")["dicom_dask"]
    assert doc["format"] == FORMAT_VERSION == 2
    assert doc["url"] == str(path) and doc["file_size"] == path.stat().st_size
    assert doc["identity"] == {"mtime": str(path.stat().st_mtime)}


def test_index_of_another_file_is_refused(tmp_path) -> None:
    a, b = _copy(MR, tmp_path / "a.dcm"), _copy(CT, tmp_path / "b.dcm")
    _index(a, tmp_path / "a.json")
    with pytest.raises(StaleIndexError, match=r"a\.dcm, not .*b\.dcm.*relocate=True"):
        dicom_dask.open_frames(b, index=tmp_path / "a.json")
    # an index whose URL was edited to name another file: refused beside either file
    doc = json.loads((tmp_path / "a.json").read_text())
    doc["dicom_dask"]["url"] = str(b)
    with pytest.raises(StaleIndexError, match=r"b\.dcm, not .*a\.dcm"):
        dicom_dask.open_frames(a, index=doc)
    with pytest.raises(StaleIndexError, match=r"size \d+ != \d+"):
        dicom_dask.open_frames(b, index=doc)


def test_index_of_a_rewritten_file_is_refused(tmp_path) -> None:
    path = _copy(MR, tmp_path / "mr.dcm")
    _index(path, tmp_path / "i.json")
    before = os.stat(path)
    # same name, other content and size
    _copy(CT, path)
    with pytest.raises(StaleIndexError, match="the file was rewritten") as info:
        dicom_dask.open_frames(path, index=tmp_path / "i.json")
    assert str(path) in str(info.value) and "size" in str(info.value)
    # same name and size, other bytes and time: the modification time tells
    data = bytearray(MR.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    with pytest.raises(StaleIndexError, match="mtime"):
        dicom_dask.open_frames(path, index=tmp_path / "i.json")
    # verify=False trusts the index (nothing is read until pixels are)
    dicom_dask.open_frames(path, index=tmp_path / "i.json", verify=False)


def test_unknown_versions_are_refused(tmp_path) -> None:
    path = _copy(MR, tmp_path / "mr.dcm")
    doc = _index(path, tmp_path / "i.json")
    for where, key, value, text in [
        (doc["dicom_dask"], "format", 99, "index format 99 is not supported"),
        (doc["dicom_dask"], "format", "2", "index format '2' is not supported"),
        (doc, "version", 2, "reference-set version 2 is not supported"),
    ]:
        bad = json.loads(json.dumps(doc))
        (bad if where is doc else bad["dicom_dask"])[key] = value
        with pytest.raises(ManifestError, match=text):
            dicom_dask.open_frames(path, index=bad)


def test_format_1_indexes_still_open_checked_for_what_they_record(tmp_path) -> None:
    path = _copy(MR, tmp_path / "mr.dcm")
    doc = _index(path, tmp_path / "i.json")
    doc["dicom_dask"]["format"] = 1
    del doc["dicom_dask"]["identity"]
    os.utime(path, ns=(0, 10**18))  # a format 1 index records no time: not compared
    expected = dicom_dask.open_frames(path).array.compute()
    np.testing.assert_array_equal(dicom_dask.open_frames(path, index=doc).array, expected)
    _copy(CT, path)
    with pytest.raises(StaleIndexError, match="size"):
        dicom_dask.open_frames(path, index=doc)


def test_a_copy_is_read_when_re_pointed_explicitly(tmp_path) -> None:
    path = _copy(JPEG, tmp_path / "orig" / "x.dcm")
    _index(path, tmp_path / "i.json")
    copy = _copy(path, tmp_path / "copy" / "x.dcm")
    os.utime(copy, ns=(0, 10**9))  # a copy has its own time
    with pytest.raises(StaleIndexError, match="relocate=True"):
        dicom_dask.open_frames(copy, index=tmp_path / "i.json")
    frames = dicom_dask.open_frames(copy, index=tmp_path / "i.json", relocate=True)
    assert frames.url == str(copy)
    path.unlink()  # the original is gone: the copy's bytes are read
    np.testing.assert_array_equal(frames.array, dicom_dask.open_frames(copy).array)
    # the size is still checked
    _copy(MR, copy)
    with pytest.raises(StaleIndexError, match="size"):
        dicom_dask.open_frames(copy, index=tmp_path / "i.json", relocate=True)


def test_series_and_slide_indexes_are_bound(tmp_path, data_tree) -> None:
    series = tmp_path / "series"
    shutil.copytree(data_tree / "series", series)
    volume = dicom_dask.open_volume(series)
    volume.save_index(tmp_path / "series.json")
    expected = volume.array.compute()
    moved = tmp_path / "moved"
    shutil.copytree(series, moved)
    again = dicom_dask.open_volume(
        index=tmp_path / "series.json", relocate={f"{series}/": f"{moved}/"}
    )
    shutil.rmtree(series)
    np.testing.assert_array_equal(again.array, expected)
    victim = sorted(moved.glob("*.dcm"))[3]
    victim.write_bytes(victim.read_bytes() + b"\0\0")
    with pytest.raises(StaleIndexError, match=victim.name):
        dicom_dask.open_volume(index=tmp_path / "series.json", relocate={f"{series}/": f"{moved}/"})

    slide_path = _copy(data_tree / "slide" / "level0.dcm", tmp_path / "slide" / "level0.dcm")
    dicom_dask.open_slide(slide_path).save_index(tmp_path / "slide.json")
    dicom_dask.open_slide(index=tmp_path / "slide.json")
    os.utime(slide_path, ns=(0, 10**9))
    with pytest.raises(StaleIndexError, match="mtime"):
        dicom_dask.open_slide(index=tmp_path / "slide.json")
    doc = json.loads((tmp_path / "slide.json").read_text())
    doc["dicom_dask_slide"]["format"] = 7
    with pytest.raises(ManifestError, match="slide index format 7"):
        dicom_dask.open_slide(index=doc)


def test_references_list_and_check_their_sources(tmp_path) -> None:
    path = _copy(MR, tmp_path / "mr.dcm")
    refs = to_kerchunk(path)
    (entry,) = refs["dicom_dask_sources"]["files"]
    assert entry["url"] == str(path) and entry["file_size"] == path.stat().st_size
    check_references(refs)
    _copy(CT, path)
    with pytest.raises(StaleIndexError, match="size"):
        check_references(refs)


def test_binding_costs_one_head_and_no_extra_request_at_open(proxy, tmp_path) -> None:
    url = f"{proxy.endpoint}/real/misc/CT_small.dcm"
    proxy.reset()
    frames = dicom_dask.open_frames(url)
    opened = proxy.reset()
    # the open asks for no size: the header's ranged GET tells it (Content-Range), and
    # its ETag and Last-Modified are what identifies the file, as a HEAD would report them
    assert [r.method for r in opened].count("HEAD") == 0
    assert set(frames.index.identity) == {"etag", "mtime"}
    frames.save_index(tmp_path / "i.json")
    assert proxy.reset() == []
    again = dicom_dask.open_frames(url, index=tmp_path / "i.json")
    log = proxy.reset()
    assert [r.method for r in log] == ["HEAD"]
    np.testing.assert_array_equal(again.array, frames.array)
    proxy.reset()
    dicom_dask.open_frames(url, index=tmp_path / "i.json", verify=False)
    assert proxy.reset() == []
    # an index whose ETag no longer matches (the server's file was replaced)
    doc = json.loads((tmp_path / "i.json").read_text())
    doc["dicom_dask"]["identity"]["etag"] = '"5f0c-0000"'
    with pytest.raises(StaleIndexError, match="etag"):
        dicom_dask.open_frames(url, index=doc)


# -- credentials ---------------------------------------------------------------------------
def test_redact_and_strip() -> None:
    url = "http://alice:pw@host:8080/a/b.dcm"
    assert redact(url) == "http://alice:***@host:8080/a/b.dcm"
    assert redact(f"simplecache::{url}") == "simplecache::http://alice:***@host:8080/a/b.dcm"
    assert redact("https://TOKEN@h/x") == "https://***@h/x"
    assert redact("/local/file@2x.dcm") == "/local/file@2x.dcm"
    assert strip_credentials(url, remember=False) == "http://host:8080/a/b.dcm"
    assert strip_credentials("dicomweb+http://u:p@h/r", remember=False) == "dicomweb+http://h/r"


class _Seen:
    """Everything shown or saved during a test, searched for a password."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, bytes]] = []

    def add(self, what: str, value: Any) -> None:
        if isinstance(value, bytes):
            self.texts.append((what, value))
        else:
            self.texts.append((what, str(value).encode("utf-8", "replace")))

    def error(self, what: str, exc: BaseException) -> None:
        self.add(what, "".join(traceback.format_exception(exc)))
        chained: BaseException | None = exc
        while chained is not None:  # what a log of the error and its causes could show
            self.add(f"{what} repr {type(chained).__name__}", repr(chained))
            self.add(f"{what} args {type(chained).__name__}", repr(vars(chained)))
            chained = chained.__cause__ or chained.__context__

    def assert_clean(self, secret: str) -> None:
        needles = [secret.encode(), base64.b64encode(f"{USER}:{secret}".encode())]
        leaks = [what for what, text in self.texts for n in needles if n in text]
        assert not leaks, f"the password appears in: {leaks}"
        assert len(self.texts) > 20


def _graph_pickles(seen: _Seen, what: str, array: Any) -> None:
    graph = dict(array.__dask_graph__())
    seen.add(what + " graph (cloudpickle)", cloudpickle.dumps(graph))
    seen.add(what + " array (pickle)", pickle.dumps(array))


def _collect_logs(caplog: pytest.LogCaptureFixture, seen: _Seen) -> None:
    for record in caplog.records:
        seen.add(f"log {record.name}", record.getMessage())


@pytest.fixture
def auth_proxy(http_server) -> Any:
    with loopback.Proxy(http_server.endpoint, auth=(USER, PASSWORD)) as p:
        yield p


def test_no_password_over_http(auth_proxy, data_tree, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    seen = _Seen()
    host = auth_proxy.endpoint.removeprefix("http://")
    secret_root = f"http://{USER}:{PASSWORD}@{host}"
    # without the credentials the server refuses: they are what makes reading work
    with pytest.raises(ReadError) as refused:
        dicom_dask.open_frames(f"http://{host}/real/misc/CT_small.dcm")
    seen.error("refused", refused.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = dicom_dask.open_frames(f"{secret_root}/real/misc/CT_small.dcm")
        np.testing.assert_array_equal(frames.array, dicom_dask.open_frames(CT).array)
        slide = dicom_dask.open_slide(f"{secret_root}/slide/level0.dcm")
        local_slide = dicom_dask.open_slide(data_tree / "slide" / "level0.dcm")
        region = slide.read_region((300, 200), 0, (256, 300))
        np.testing.assert_array_equal(region, local_slide.read_region((300, 200), 0, (256, 300)))
        volume = dicom_dask.open_volume(
            [f"{secret_root}/series/{p.name}" for p in sorted((data_tree / "series").iterdir())]
        )
        np.testing.assert_array_equal(
            volume.array, dicom_dask.open_volume(data_tree / "series").array
        )
        for what, obj in [("frames", frames), ("slide", slide), ("volume", volume)]:
            seen.add(f"{what} repr", repr(obj))
            seen.add(f"{what} metadata", json.dumps(getattr(obj, "metadata", {}), default=str))
            for key, doc in obj.store.documents.items():
                seen.add(f"{what} store {key}", doc)
            _graph_pickles(seen, what, obj.levels[0] if what == "slide" else obj.array)
            obj.save_index(tmp_path / f"{what}.json")
            seen.add(f"{what} saved index", (tmp_path / f"{what}.json").read_bytes())
        seen.add("frames store pickle", cloudpickle.dumps(frames.store))
        for kind, source in [
            ("frames", f"{secret_root}/real/misc/CT_small.dcm"),
            ("slide", f"{secret_root}/slide/level0.dcm"),
        ]:
            seen.add(f"{kind} kerchunk", json.dumps(to_kerchunk(source, kind=kind)))
        seen.add("volume kerchunk", json.dumps(volume.to_kerchunk()))
        # errors that name the URL: a missing file, a directory, a wrong password
        for bad in [
            f"{secret_root}/real/misc/nothing.dcm",
            f"http://{USER}:wrong-{PASSWORD}@{host}/real/misc/CT_small.dcm",
            f"{secret_root}/real/misc/",
        ]:
            with pytest.raises(DicomDaskError) as info:
                dicom_dask.open_frames(bad)
            seen.error(f"error for {redact(bad)}", info.value)
        with pytest.raises(DicomDaskError) as info:
            dicom_dask.open_volume(f"{secret_root}/nothing/*.dcm")
        seen.error("volume error", info.value)
        # an index re-pointed at the wrong URL: the message names both, without the password
        with pytest.raises(StaleIndexError, match=r"MR_small\.dcm") as info:
            dicom_dask.open_frames(
                f"{secret_root}/real/misc/MR_small.dcm", index=tmp_path / "frames.json"
            )
        seen.error("stale", info.value)
        # reopening from the saved index reads with the credentials this process was given
        again = dicom_dask.open_frames(
            f"{secret_root}/real/misc/CT_small.dcm", index=tmp_path / "frames.json"
        )
        np.testing.assert_array_equal(again.array, frames.array)
    for w in caught:
        seen.add(f"warning {w.category.__name__}", w.message)
    assert any(issubclass(w.category, CredentialsWarning) for w in caught)
    warned = next(w.message for w in caught if w.category is CredentialsWarning)
    assert "storage_options" in str(warned) and f"{USER}:***@" in str(warned)
    _collect_logs(caplog, seen)
    seen.assert_clean(PASSWORD)
    saved = json.loads((tmp_path / "frames.json").read_text())
    assert saved["dicom_dask"]["url"] == f"http://{host}/real/misc/CT_small.dcm"


@pytest.fixture(scope="module")
def orthanc_with_auth(data_tree) -> Any:
    pytest.importorskip("dicomweb_client")
    with _server(functools.partial(loopback.orthanc, users={USER: PASSWORD})) as server:
        files = [data_tree / "slide" / "level0.dcm", *sorted((data_tree / "series").glob("*.dcm"))]
        accepted = loopback.orthanc_upload(server.endpoint, files, auth=(USER, PASSWORD))
        assert len(accepted) == len(files)
        yield server


def test_no_password_over_dicomweb(orthanc_with_auth, data_tree, tmp_path, caplog) -> None:
    import pydicom

    caplog.set_level(logging.DEBUG)
    seen = _Seen()
    host = orthanc_with_auth.endpoint.removeprefix("http://")
    ds = pydicom.dcmread(data_tree / "slide" / "level0.dcm", stop_before_pixels=True)
    slide_url = (
        f"dicomweb+http://{USER}:{PASSWORD}@{host}/dicom-web/studies/{ds.StudyInstanceUID}"
        f"/series/{ds.SeriesInstanceUID}"
    )
    first = sorted((data_tree / "series").glob("*.dcm"))[0]
    sds = pydicom.dcmread(first, stop_before_pixels=True)
    series_url = (
        f"dicomweb+http://{USER}:{PASSWORD}@{host}/dicom-web/studies/{sds.StudyInstanceUID}"
        f"/series/{sds.SeriesInstanceUID}"
    )
    with pytest.raises(ReadError) as refused:  # no credentials: 401
        dicom_dask.open_slide(slide_url.replace(f"{USER}:{PASSWORD}@", ""))
    seen.error("refused", refused.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slide = dicom_dask.open_slide(slide_url)
        local = dicom_dask.open_slide(data_tree / "slide" / "level0.dcm")
        np.testing.assert_array_equal(
            slide.read_region((100, 900), 0, (300, 200)),
            local.read_region((100, 900), 0, (300, 200)),
        )
        volume = dicom_dask.open_volume(series_url)
        np.testing.assert_array_equal(
            volume.array, dicom_dask.open_volume(data_tree / "series").array
        )
        frames = dicom_dask.open_frames(f"{slide_url}/instances/{ds.SOPInstanceUID}")
        for what, obj in [("slide", slide), ("volume", volume), ("frames", frames)]:
            seen.add(f"{what} repr", repr(obj))
            seen.add(f"{what} metadata", json.dumps(getattr(obj, "metadata", {}), default=str))
            for key, doc in obj.store.documents.items():
                seen.add(f"{what} store {key}", doc)
            _graph_pickles(seen, what, obj.levels[0] if what == "slide" else obj.array)
            try:  # DICOMweb frames have no byte ranges: no references, and it says so
                obj.save_index(tmp_path / f"{what}.json")
                seen.add(f"{what} saved index", (tmp_path / f"{what}.json").read_bytes())
            except ManifestError as exc:
                seen.error(f"{what} index error", exc)
        for what, obj in [("volume", volume), ("frames", frames)]:
            try:
                seen.add(f"{what} kerchunk", json.dumps(obj.to_kerchunk()))
            except ManifestError as exc:
                seen.error(f"{what} kerchunk error", exc)
        for bad in [
            f"dicomweb+http://{USER}:{PASSWORD}@{host}/dicom-web/studies/1.2.3/series/4.5",
            f"dicomweb+http://{USER}:{PASSWORD}@{host}/dicom-web/nothing",
            f"dicomweb+http://{USER}:wrong{PASSWORD}@{host}/dicom-web/studies/1.2/series/3",
        ]:
            with pytest.raises(DicomDaskError) as info:
                dicom_dask.open_volume(bad)
            seen.error(f"error for {redact(bad)}", info.value)
    for w in caught:
        seen.add(f"warning {w.category.__name__}", w.message)
    assert any(issubclass(w.category, CredentialsWarning) for w in caught)
    _collect_logs(caplog, seen)
    seen.assert_clean(PASSWORD)
