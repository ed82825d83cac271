"""The fuzz targets in CI: every past finding replayed, then a short coverage-guided run of
each target (8 s each, 48 s in all; the long run is described in ``docs/frames.md``)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from .harnesses import REAL, TARGETS

HERE = Path(__file__).resolve().parent
REGRESSIONS = sorted((HERE / "regressions").rglob("crash-*"))
#: Seconds of fuzzing per target in CI.
SECONDS = int(os.environ.get("DICOM_DASK_FUZZ_SECONDS", "8"))


@pytest.mark.parametrize(
    "path", REGRESSIONS, ids=[f"{p.parent.name}-{p.name[:14]}" for p in REGRESSIONS]
)
def test_past_findings_raise_only_our_errors(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TARGETS[path.parent.name](path.read_bytes())


@pytest.mark.skipif(not REAL.exists(), reason="real data (the seed corpus) not found")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_short_fuzz_run(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.run",
        target,
        str(tmp_path / "corpus"),
        f"-max_total_time={SECONDS}",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=SECONDS + 120, env=env, cwd=HERE.parents[1]
    )
    tail = "\n".join(done.stderr.splitlines()[-40:])
    assert done.returncode == 0, f"{target}: a finding (see {tmp_path}):\n{tail}"
    assert "stat::number_of_executed_units" in done.stderr, tail
