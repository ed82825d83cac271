from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from shutil import which
from typing import Any

import numpy as np
import pydicom
import pytest
from fsspec.implementations.local import LocalFileSystem
from hypothesis import settings

HERE = Path(__file__).resolve().parent
REAL = Path(os.environ.get("DICOM_DASK_REAL_DATA", HERE.parent.parent / "shared" / "data" / "real"))

# Hypothesis: under CI (CI=true) every property test draws the same examples on every run:
# derandomize=True seeds each test from a digest of the test itself (no global random
# seed, no example database replaying earlier failures, no deadline that a loaded machine
# misses). HYPOTHESIS_PROFILE=ci gives the same locally; elsewhere the default profile.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get(
    "HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI", "").lower() == "true" else "default"
)
settings.load_profile(HYPOTHESIS_PROFILE)


#: Programs that pip cannot install, and what goes without them (``.ci/run`` installs them).
PROGRAMS = {
    "nginx": "the HTTP range tests skip",
    "Orthanc": "the DICOMweb tests skip",
    "dciodvfy": "the writers' dciodvfy checks are left out",
    "chromium": "the docs site browser test skips",
}


def pytest_report_header(config: pytest.Config) -> list[str]:
    active = settings()
    if active.derandomize:
        seed = "fixed: each test's seed is a digest of the test (derandomize=True)"
    else:
        seed = "random per run (the failing example is printed; HYPOTHESIS_PROFILE=ci fixes it)"
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    missing = [f"{name} ({why})" for name, why in PROGRAMS.items() if not which(name, path=path)]
    return [
        f"hypothesis profile {HYPOTHESIS_PROFILE!r}: seed {seed}",
        "programs: " + ("all found" if not missing else "missing: " + "; ".join(missing)),
    ]


#: Fixtures that start a server process (nginx, moto, the GCS emulator, Orthanc, the proxy).
SERVER_FIXTURES = {"http_server", "s3_server", "gcs_server", "dicomweb_server", "backend", "proxy"}
#: Calls in a test's body that start servers or a process cluster themselves.
SERVER_CALLS = ("process_cluster(", "_server(", "LocalCluster(", "loopback.", "Orthanc")


def _marks_for(item: pytest.Item) -> set[str]:
    """The markers a test earns by what it uses: ``servers`` and ``realdata``."""
    marks = set()
    names = set(getattr(item, "fixturenames", ()))
    funcs = [getattr(item, "function", None)]
    # the fixtures it uses, and theirs: a module fixture may start the cluster
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    funcs += [d[-1].func for n, d in defs.items() if d and n not in SERVER_FIXTURES]
    body = ""
    for func in funcs:
        with contextlib.suppress(OSError, TypeError):
            body += inspect.getsource(func)
    if names & SERVER_FIXTURES or any(call in body for call in SERVER_CALLS):
        marks.add("servers")
    params = getattr(getattr(item, "callspec", None), "params", {})
    real = str(REAL)
    if (
        "real_dir" in names
        or re.search(r"\b(REAL|REFERENCE|real_reference)\b", body)
        or any(real in str(value) for value in params.values())
    ):
        marks.add("realdata")
    return marks


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with what it needs (``-m "not servers"``, ``-m realdata``...)."""
    for item in items:
        for name in _marks_for(item):
            item.add_marker(name)


def real_reference() -> dict[str, Any]:
    path = REAL / "REFERENCE.json"
    if not path.exists():
        return {"files": [], "series": {}}
    return dict(json.loads(path.read_text()))


REFERENCE = real_reference()
REAL_FILES = [f["path"] for f in REFERENCE["files"]]


def read_reference_array(entry: dict[str, Any]) -> np.ndarray | None:
    """pydicom's pixel_array for a real file, or None when pydicom cannot decode it."""
    ds = pydicom.dcmread(REAL / entry["path"], force=entry["read_with_force"])
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = entry["transfer_syntax_uid"]
    try:
        return np.asarray(ds.pixel_array)
    except Exception:
        return None


class CountingFileSystem(LocalFileSystem):
    """A local filesystem that counts requests and bytes read through it."""

    protocol = ("counting",)
    cachable = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests = 0
        self.bytes_read = 0

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kw: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        with open(path, "rb") as f:
            f.seek(start or 0)
            data = f.read(-1 if end is None else end - (start or 0))
        self.requests += 1
        self.bytes_read += len(data)
        return data

    def cat_ranges(self, paths, starts, ends, max_gap=None, on_error="return", **kw):  # type: ignore[no-untyped-def]
        out = [self.cat_file(p, s, e) for p, s, e in zip(paths, starts, ends, strict=True)]
        return out

    def _open(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the library must not open buffered files; it reads ranges")

    def open(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the library must not open buffered files; it reads ranges")

    def reset(self) -> None:
        self.requests = 0
        self.bytes_read = 0


@pytest.fixture
def counting_fs() -> CountingFileSystem:
    return CountingFileSystem()


@contextmanager
def hang_guard(seconds: int = 10) -> Iterator[None]:
    """Fail instead of hanging (SIGALRM; main thread only)."""

    def handler(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def process_cluster(threads_per_worker: int = 1) -> Iterator[Any]:
    """A client of a LocalCluster with two process workers, closed on exit."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="session", autouse=True)
def dask_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dask's and distributed's scratch folders (the workers' spill space and locks) under
    pytest's temporary folder, not ``dask-scratch-space`` in the system temp folder."""
    import dask

    folder = tmp_path_factory.mktemp("dask")
    with dask.config.set({"temporary-directory": str(folder)}):
        yield folder


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not (REAL / "REFERENCE.json").exists():
        pytest.skip(f"real data not found at {REAL}")
    return REAL


# the servers' fixtures (nginx, moto, the GCS emulator, the counting proxy); imported last
# because tests/servers.py uses REAL from this module
from tests.servers import (  # noqa: E402, F401
    backend,
    data_tree,
    dicomweb_server,
    gcs_server,
    http_server,
    proxy,
    s3_server,
)
