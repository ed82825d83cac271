"""Session fixtures: one data tree served by nginx, moto (S3) and a GCS emulator on 127.0.0.1.

The tree holds a synthetic 4,096-tile slide, a synthetic shuffled series and a copy of
``../shared/data/real``. When a server program is missing the tests that need it skip,
unless ``DICOM_DASK_REQUIRE_SERVERS=1`` (set by ``.ci/run``, which installs them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import uid

from dicom_dask.testing import loopback, series_positions, write_series, write_slide
from tests.conftest import REAL

#: The synthetic slide: 64 x 64 tiles of 128 x 128 RGB pixels (4,096 tiles).
SLIDE_TILE = 128
SLIDE_SIZE = 64 * SLIDE_TILE
REQUIRE = os.environ.get("DICOM_DASK_REQUIRE_SERVERS") == "1"
# gcsfs >= 2025.x first asks a gRPC API whether a bucket is zonal; the emulator has none,
# and each new filesystem then waits 60 s for the answer
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def _server(factory: Any, *args: Any) -> loopback.ServerProcess:
    try:
        return factory(*args)
    except FileNotFoundError as exc:
        if REQUIRE:
            raise
        pytest.skip(str(exc))


def slide_matrix() -> np.ndarray:
    """A smooth RGB picture with noise: compresses like tissue, not like a flat field."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:SLIDE_SIZE:8, 0:SLIDE_SIZE:8].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / 700.0),
            128 + 100 * np.cos(yy / 500.0),
            128 + 60 * np.sin((xx + yy) / 900.0),
        ],
        axis=-1,
    )
    big = np.repeat(np.repeat(base, 8, axis=0), 8, axis=1)
    noise = rng.integers(-12, 12, size=(1024, 1024, 3), dtype=np.int16)
    big += np.tile(noise, (SLIDE_SIZE // 1024, SLIDE_SIZE // 1024, 1))
    return np.clip(big, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def data_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    (root / "slide").mkdir()
    write_slide(root / "slide" / "level0.dcm", slide_matrix(), tile=(SLIDE_TILE, SLIDE_TILE))
    rng = np.random.default_rng(3)
    volume = rng.integers(0, 4000, (24, 64, 48), dtype=np.uint16)
    (root / "series").mkdir()
    write_series(
        root / "series",
        volume,
        positions=series_positions(24, slice_spacing=2.5),
        shuffle=7,
        transfer_syntax=uid.RLELossless,
    )
    if REAL.exists():
        shutil.copytree(REAL, root / "real", ignore=shutil.ignore_patterns("LICENSES", "*.md"))
    return root


@dataclass
class Backend:
    """Where the tree is served and how to reach it."""

    name: str
    prefix: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def url(self, relative: str) -> str:
        return f"{self.prefix}/{relative}"


@pytest.fixture(scope="session")
def http_server(data_tree: Path) -> Iterator[loopback.ServerProcess]:
    with _server(loopback.nginx, data_tree) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(data_tree: Path) -> Iterator[tuple[loopback.ServerProcess, dict[str, Any]]]:
    s3fs = pytest.importorskip("s3fs")
    with _server(loopback.moto_server) as server:
        options = {"endpoint_url": server.endpoint, "key": "testing", "secret": "testing"}
        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        fs.mkdir("dicom")
        fs.put(str(data_tree) + "/", "dicom/", recursive=True)
        yield server, options


@pytest.fixture(scope="session")
def gcs_server(data_tree: Path) -> Iterator[tuple[loopback.ServerProcess, dict[str, Any]]]:
    gcsfs = pytest.importorskip("gcsfs")
    with _server(loopback.gcs_emulator) as server:
        before = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = server.endpoint
        try:
            options = {"token": "anon", "project": "dicom-dask"}
            fs = gcsfs.GCSFileSystem(**options, skip_instance_cache=True)
            fs.mkdir("dicom")
            fs.put(str(data_tree) + "/", "dicom/", recursive=True)
            yield server, options
        finally:
            if before is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = before


@pytest.fixture(params=["local", "http", "s3", "gs"])
def backend(request: pytest.FixtureRequest, data_tree: Path) -> Backend:
    if request.param == "local":
        return Backend("local", str(data_tree))
    if request.param == "http":
        server = request.getfixturevalue("http_server")
        return Backend("http", server.endpoint)
    if request.param == "s3":
        _, options = request.getfixturevalue("s3_server")
        return Backend("s3", "s3://dicom", options)
    _, options = request.getfixturevalue("gcs_server")
    return Backend("gs", "gs://dicom", options)


@pytest.fixture
def proxy(http_server: loopback.ServerProcess) -> Iterator[loopback.Proxy]:
    """A counting proxy in front of nginx (set ``latency``/``fail_rate`` on it)."""
    with loopback.Proxy(http_server.endpoint) as p:
        yield p


@pytest.fixture(scope="session")
def dicomweb_server(data_tree: Path) -> Iterator[tuple[loopback.ServerProcess, list[str]]]:
    """Orthanc with its DICOMweb plugin, holding the slide, the series and the real
    slide and series files; yields the server and the files it accepted."""
    pytest.importorskip("dicomweb_client")
    files = [data_tree / "slide" / "level0.dcm", *sorted((data_tree / "series").glob("*.dcm"))]
    for folder in ("wsi", "volume_series"):
        files += sorted(p for p in (data_tree / "real" / folder).rglob("*.dcm"))
    with _server(loopback.orthanc) as server:
        yield server, loopback.orthanc_upload(server.endpoint, files)


def start_server(factory: Any, *args: Any) -> loopback.ServerProcess:
    """``factory(*args)`` (a [`loopback`][dicom_dask.testing.loopback] server), or skip the
    test when its program is missing (unless ``DICOM_DASK_REQUIRE_SERVERS=1``)."""
    return _server(factory, *args)
