"""A server that ignores ``Range`` (Python's ``http.server``) gets a clear error on the
first read instead of a whole-file download for every frame."""

from __future__ import annotations

import functools
import socketserver
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import dicom_dask
from dicom_dask.errors import RangeNotSupportedError, ReadError
from dicom_dask.testing import write_dicom


class _Quiet(SimpleHTTPRequestHandler):
    """``http.server``'s file handler: answers every GET with 200 and the whole file."""

    requests: list[tuple[str, str | None]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("Range")))
        super().do_GET()

    def do_HEAD(self) -> None:
        self.requests.append(("HEAD " + self.path, None))
        super().do_HEAD()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:  # HTTPServer's looks up the host name (slow offline)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


@pytest.fixture
def no_range_server(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str | None]], Path]]:
    requests: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Quiet,), {"requests": requests})
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests, tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_ignored_range_raises_on_first_read(no_range_server) -> None:
    endpoint, requests, root = no_range_server
    arr = np.random.default_rng(0).integers(0, 4000, (40, 64, 64), dtype=np.uint16)
    write_dicom(root / "f.dcm", arr, transfer_syntax="1.2.840.10008.1.2.5")  # RLE, > first block
    size = (root / "f.dcm").stat().st_size
    url = f"{endpoint}/f.dcm"
    with pytest.raises(RangeNotSupportedError, match="ignored the Range header") as info:
        dicom_dask.open_frames(url)
    message = str(info.value)
    assert url in message and f"it sent {size} bytes (the whole file)" in message
    assert "simplecache::" in message
    assert isinstance(info.value, ReadError)
    gets = [r for r in requests if r[0] == "/f.dcm"]
    assert len(gets) == 1 and gets[0][1] is not None  # one ranged GET, then the error


def test_simplecache_reads_a_no_range_server_once(no_range_server, tmp_path) -> None:
    """The way out the message names: fsspec downloads the file once, reads are local."""
    endpoint, requests, root = no_range_server
    arr = np.random.default_rng(1).integers(0, 4000, (6, 32, 32), dtype=np.uint16)
    write_dicom(root / "f.dcm", arr, transfer_syntax="1.2.840.10008.1.2.5")
    url = f"simplecache::{endpoint}/f.dcm"
    options = {"simplecache": {"cache_storage": str(tmp_path / "cache")}}
    frames = dicom_dask.open_frames(url, storage_options=options)
    np.testing.assert_array_equal(frames.array.compute(), arr)
    # fsspec's info() may GET the file for its size; then simplecache downloads it once
    # and every frame is read from the local copy (not one download per frame)
    assert len([r for r in requests if r[0] == "/f.dcm"]) <= 2 < len(arr)
