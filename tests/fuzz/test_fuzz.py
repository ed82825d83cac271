"""The fuzz targets in CI: every past finding replayed, then a short coverage-guided run of
each target (8 s each, 48 s in all; the long run is described in ``docs/frames.md``)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from . import harnesses
from .harnesses import REAL, TARGETS

HERE = Path(__file__).resolve().parent
REGRESSIONS = sorted((HERE / "regressions").rglob("crash-*"))
#: Seconds of fuzzing per target in CI.
SECONDS = int(os.environ.get("DICOM_DASK_FUZZ_SECONDS", "8"))


@pytest.mark.parametrize(
    "path", REGRESSIONS, ids=[f"{p.parent.name}-{p.name[:14]}" for p in REGRESSIONS]
)
def test_past_findings_raise_only_our_errors(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the targets that read a local file write it here, not in the system temp folder
    monkeypatch.setattr(harnesses, "_TMP", tmp_path / "input.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TARGETS[path.parent.name](path.read_bytes())


def _rss_limit_mb(budget: int = 2048) -> int:
    """libFuzzer's memory limit: ``budget`` MiB above the peak RSS of this process.

    libFuzzer reads its RSS with ``getrusage``, whose ``ru_maxrss`` a child inherits
    from the process that started it (Linux keeps the peak across ``fork`` and
    ``execve``): late in a long pytest run the harness would start "over" its 2 GiB
    default before it ran a single input.
    """
    return budget + resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


@pytest.mark.slow
@pytest.mark.skipif(not REAL.exists(), reason="real data (the seed corpus) not found")
def test_short_fuzz_run_of_every_target(tmp_path: Path) -> None:
    """All targets at once (one process each, so the wall time stays under a minute on
    two cores): each must end its run with no finding."""
    pytest.importorskip("atheris")
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    runs = {}
    for target in sorted(TARGETS):
        out = tmp_path / target
        out.mkdir()
        # the harness's scratch input (tempfile.gettempdir()) lands in ``out`` too
        env["TMPDIR"] = str(out)
        command = [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            target,
            str(out / "corpus"),
            f"-max_total_time={SECONDS}",
            f"-artifact_prefix={out}/",
            f"-rss_limit_mb={_rss_limit_mb()}",
            "-print_final_stats=1",
        ]
        log = (out / "log").open("w")
        runs[target] = (
            subprocess.Popen(command, stdout=log, stderr=log, env=dict(env), cwd=HERE.parents[1]),
            out / "log",
        )
    failed = {}
    for target, (proc, log) in runs.items():
        try:
            code = proc.wait(timeout=SECONDS + 240)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "timeout"
        text = log.read_text()
        if code != 0 or "stat::number_of_executed_units" not in text:
            failed[target] = "\n".join(text.splitlines()[-30:])
    assert not failed, "\n\n".join(f"{t} ({tmp_path / t}):\n{tail}" for t, tail in failed.items())
