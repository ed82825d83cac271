"""Write the 16384² bench slide as a 3-level JPEG pyramid: dicom_dask against wsidicom.

Each run is a fresh subprocess, so that its peak resident memory (``ru_maxrss``) is its
own. Modes:

* ``threads``: ``to_dicom_slide`` on dask's threaded scheduler (2 threads);
* ``cluster``: the same on a 2-process ``LocalCluster`` (1 thread each); peak memory is
  the client's plus each worker's;
* ``wsidicom``: ``WsiDicom.save`` transcoding to JPEG (quality 90) with
  ``add_missing_levels=True`` and 2 workers -- it writes every missing level down to one
  tile, so ``ours-all`` writes the same number of levels with dicom_dask for a like for
  like comparison.

Input: ``benchmarks/data/slide-bot/level0.dcm`` (4,096 JPEG tiles of 256², made by
``make_data.py``). Usage: ``python benchmarks/bench_write.py [--repeat 2] [--modes ...]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "data" / "slide-bot"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mode(mode: str, out: str) -> dict[str, object]:
    """One write in this process; returns seconds, peak MiB and what was written."""
    import dask

    if mode == "wsidicom":
        from wsidicom import WsiDicom
        from wsidicom.codec import JpegSettings

        t0 = time.perf_counter()  # imports excluded, opening included, for both
        with WsiDicom.open(SOURCE) as wsi:
            files = wsi.save(
                out,
                workers=2,
                add_missing_levels=True,
                transcoding=JpegSettings(quality=90),
                force_transcoding=True,
            )
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "peak_mib": _peak_mib(), "files": len(files)}
    import dicom_dask

    levels = 7 if mode == "ours-all" else 3
    kwargs = {"transfer_syntax": "jpeg", "quality": 90, "levels": levels, "progress": False}
    if mode == "cluster":
        import distributed

        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            t0 = time.perf_counter()  # the cluster's start is not timed
            slide = dicom_dask.open_slide(SOURCE)
            files = dicom_dask.to_dicom_slide(slide.levels[0], out, like=slide, **kwargs)
            seconds = time.perf_counter() - t0
            workers = client.run(_peak_mib)
        peak = _peak_mib() + sum(workers.values())
        return {"seconds": seconds, "peak_mib": peak, "files": len(files), "workers": workers}
    t0 = time.perf_counter()
    slide = dicom_dask.open_slide(SOURCE)
    with dask.config.set(scheduler="threads", num_workers=2):
        files = dicom_dask.to_dicom_slide(slide.levels[0], out, like=slide, **kwargs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mib": _peak_mib(), "files": len(files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--modes", nargs="+", default=["threads", "cluster", "wsidicom", "ours-all"]
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_mode(args.one, args.out)))
        return
    if not (SOURCE / "level0.dcm").exists():
        sys.exit(f"{SOURCE} is missing: run benchmarks/make_data.py")
    results: dict[str, list[dict[str, object]]] = {}
    for _ in range(args.repeat):
        for mode in args.modes:  # interleaved, so that machine load hits all alike
            out = tempfile.mkdtemp(prefix=f"bench-write-{mode}-")
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", mode, "--out", out],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                size = sum(p.stat().st_size for p in Path(out).rglob("*.dcm"))
            finally:
                shutil.rmtree(out, ignore_errors=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["mib_written"] = round(size / 2**20, 1)
            results.setdefault(mode, []).append(result)
            print(mode, json.dumps(result), flush=True)
    print("\nmode        seconds (min-max)        peak MiB (min-max)")
    for mode, runs in results.items():
        secs = [float(r["seconds"]) for r in runs]  # type: ignore[arg-type]
        peaks = [float(r["peak_mib"]) for r in runs]  # type: ignore[arg-type]
        print(
            f"{mode:10s}  {min(secs):7.1f} - {max(secs):7.1f}   "
            f"{min(peaks):8.0f} - {max(peaks):8.0f}"
        )


if __name__ == "__main__":
    main()
