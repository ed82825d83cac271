"""Write the 16384² bench slide as a 7-level JPEG pyramid: dicom_dask, its ceiling, wsidicom.

Each run is a fresh subprocess, so that its peak resident memory (``ru_maxrss``) is its
own (``VmHWM``). Modes:

* ``ceiling``: the least work that gives the same files, with no dask: level 0 in bands
  of two tile rows, 2 threads taking one band at a time; in a band, each 2 x 2 group of
  tiles is read (``os.pread`` at offsets known beforehand), decoded, each tile encoded
  at once and averaged 2 x 2 into its quarter of the level-1 tile, which is encoded and
  averaged again into level 2 -- all while in cache; then the small levels (2-6) from
  level 2 held in memory, tile rows in 2 threads. Same decoder (libjpeg-turbo to RGB),
  same encoder and quality, same 2 x 2 means as dicom_dask; the frames go through the
  same stream writer (header, items, offset table), so the files are the same but for
  their UIDs and dates (``--check`` compares every frame);
* ``threads``: ``to_dicom_slide`` on dask's threaded scheduler (2 threads);
* ``cluster``: the same on a 2-process ``LocalCluster`` (1 thread each, started before
  the clock); peak memory and CPU time are the client's plus each worker's;
* ``wsidicom``: ``WsiDicom.save`` transcoding to JPEG (quality 90) with
  ``add_missing_levels=True`` and 2 workers: it writes every missing level down to one
  tile, 7 levels in all, as the other modes do.

Times (wall, and CPU of all threads: steadier on a shared machine) include opening
the source (imports excluded). Input: ``level0.dcm`` of
``--source`` (default ``benchmarks/data/slide-bot``: 4,096 JPEG tiles of 256², made by
``make_data.py``; ``make_data.py --out /tmp/bench`` puts it in ``/tmp/bench/slide-bot``).

Usage: ``python benchmarks/bench_write.py [--source DIR] [--repeat 2] [--modes ...] [--check]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "data" / "slide-bot"
LEVELS = 7
QUALITY = 90


def _peak_mib() -> float:
    """This process's peak resident memory (``VmHWM``: unlike ``ru_maxrss``, it does not
    start from the parent's size at the fork)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the ceiling --------------------------------------------------------------------------
class _Fused:
    """Level 0's bands read, decoded, encoded and averaged down two levels in cache."""

    def __init__(self, source: Path) -> None:
        import imagecodecs

        import dicom_dask
        from dicom_dask.enums import FrameEncoding

        level = dicom_dask.open_tiled(source / "level0.dcm")
        m = level.manifest
        header = np.where(m.encoding[0, 0] == FrameEncoding.ITEMS.value, 8, 0)
        self.offsets = m.offsets[0, 0].astype(np.int64) + header
        self.lengths = m.lengths[0, 0].astype(np.int64) - header
        self.path = str(source / "level0.dcm")
        self.tile = level.tile_shape
        self.shape = level.matrix_shape
        self.decode = imagecodecs.jpeg8_decode
        self.encode = imagecodecs.jpeg8_encode

    def band(self, b: int) -> tuple[list[bytes], list[bytes], np.ndarray]:
        """Tile rows ``2b, 2b + 1`` of level 0, row ``b`` of level 1, rows of level 2."""
        from dicom_dask.integrations.writers.pyramid import halve

        th, tw = self.tile
        nx = self.offsets.shape[1]
        enc0: list[list[bytes]] = [[b""] * nx, [b""] * nx]
        enc1: list[bytes] = []
        down2 = np.empty((th // 2, nx * tw // 4, 3), np.uint8)
        quad = np.empty((th, tw, 3), np.uint8)  # one level-1 tile
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for c in range(0, nx, 2):
                for dr in range(2):
                    for dc in range(2):
                        r, cc = 2 * b + dr, c + dc
                        blob = os.pread(fd, int(self.lengths[r, cc]), int(self.offsets[r, cc]))
                        tile = self.decode(blob, colorspace="YCbCr", outcolorspace="RGB")
                        enc0[dr][cc] = bytes(self.encode(tile, level=QUALITY))
                        ys, xs = dr * th // 2, dc * tw // 2
                        halve(tile, quad[ys : ys + th // 2, xs : xs + tw // 2])
                enc1.append(bytes(self.encode(quad, level=QUALITY)))
                halve(quad, down2[:, c // 2 * tw // 2 : (c // 2 + 1) * tw // 2])
        finally:
            os.close(fd)
        return enc0[0] + enc0[1], enc1, down2


def _small_levels(level2: np.ndarray, levels: int, tile: tuple[int, int], pool: Any) -> Any:
    """Levels 2.. from level 2 in memory: each level's tile rows encoded in the pool."""
    import imagecodecs

    from dicom_dask.integrations.writers.encode import encode_block
    from dicom_dask.integrations.writers.pyramid import halve

    class _Jpeg:
        def __call__(self, t: np.ndarray) -> bytes:
            return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(t), level=QUALITY))

    th = tile[0]
    array = level2
    for _ in range(2, levels):
        rows = [array[y : y + th] for y in range(0, array.shape[0], th)]
        encoded = pool.map(lambda r: encode_block(r, tile=tile, encoder=_Jpeg()), rows)
        yield [bytes(f) for row in encoded for f in row.ravel()]
        array = halve(array)


def run_ceiling(source: Path, out: str) -> list[str]:
    """The ceiling (see the module notes); returns the files written."""
    from dicom_dask.integrations.writers.dataset import LevelSpec, slide_context
    from dicom_dask.integrations.writers.dataset import slide_level_dataset as level_ds
    from dicom_dask.integrations.writers.stream import InstanceWriter

    fused = _Fused(source)
    rows, cols = fused.shape
    th, tw = fused.tile
    context = slide_context(None, samples=3)
    writers = []
    for k in range(LEVELS):
        spec = LevelSpec(rows >> k, cols >> k, (th, tw), 3, 8, False, (0.00025 * 2**k,) * 2)
        ds = level_ds(
            context,
            spec,
            transfer_syntax="1.2.840.10008.1.2.4.50",
            photometric_interpretation="YBR_FULL_422",
            lossy_method="ISO_10918_1",
            instance_number=k + 1,
        )
        path = os.path.join(out, f"level-{k}.dcm")
        writers.append(
            InstanceWriter(
                ds,
                path,
                number_of_frames=int(ds.NumberOfFrames),
                encapsulated=True,
                frame_bytes=th * tw * 3,
            )
        )
    level2 = np.empty((rows // 4, cols // 4, 3), np.uint8)
    with ThreadPoolExecutor(2) as pool:
        for b, (enc0, enc1, down) in enumerate(pool.map(fused.band, range(rows // (2 * th)))):
            writers[0].write(enc0)
            writers[1].write(enc1)
            level2[b * th // 2 : (b + 1) * th // 2] = down
        for k, frames in enumerate(_small_levels(level2, LEVELS, (th, tw), pool), start=2):
            writers[k].write(frames)
    return [w.close().url for w in writers]


# -- the modes ----------------------------------------------------------------------------
def _ours(source: Path, out: str) -> list[str]:
    import dicom_dask

    slide = dicom_dask.open_slide(source)
    kwargs = {"transfer_syntax": "jpeg", "quality": QUALITY, "levels": LEVELS, "progress": False}
    return dicom_dask.to_dicom_slide(slide.levels[0], out, like=slide, **kwargs)


def _cpu() -> float:
    """CPU seconds of this process so far (all threads): less sensitive than wall time
    to other jobs on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wsidicom(source: Path, out: str) -> list[Any]:
    from wsidicom import WsiDicom
    from wsidicom.codec import JpegSettings

    with WsiDicom.open(source) as wsi:
        return list(
            wsi.save(
                out,
                workers=2,
                add_missing_levels=True,
                transcoding=JpegSettings(quality=QUALITY),
                force_transcoding=True,
            )
        )


def _on_cluster(source: Path, out: str) -> dict[str, object]:
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(_warm_worker)  # workers' imports done, as the threads' are
        cpu0, workers0 = _cpu(), client.run(_cpu)
        t0 = time.perf_counter()  # the cluster's start is not timed
        files = _ours(source, out)
        seconds = time.perf_counter() - t0
        workers1 = client.run(_cpu)
        peaks = client.run(_peak_mib)
    cpu = _cpu() - cpu0 + sum(workers1[w] - workers0[w] for w in workers1)
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_mib": _peak_mib() + sum(peaks.values()),
        "files": len(files),
        "workers_peak_mib": peaks,
    }


def _warm_imports() -> None:
    """Import before the clock what any mode imports on its way (a pipeline has them)."""
    import dask.array
    import dask.threaded
    import highdicom
    import imagecodecs
    import PIL.Image
    import wsidicom

    import dicom_dask
    import dicom_dask.integrations.writers.pyramid

    del dask, highdicom, imagecodecs, PIL, wsidicom, dicom_dask


def _warm_worker() -> None:
    """What a worker imports on its first band task (the threads' process has it)."""
    import imagecodecs
    import PIL.Image

    import dicom_dask.chunks.decoders
    import dicom_dask.integrations.writers.pyramid

    del imagecodecs, PIL, dicom_dask


def run_mode(mode: str, source: Path, out: str) -> dict[str, object]:
    """One write in this process: wall and CPU seconds (imports excluded, opening the
    source included), peak MiB, files written."""
    import dask

    _warm_imports()
    if mode == "cluster":
        return _on_cluster(source, out)
    cpu0, t0 = _cpu(), time.perf_counter()
    if mode == "ceiling":
        files: list[Any] = run_ceiling(source, out)
    elif mode == "wsidicom":
        files = _wsidicom(source, out)
    else:
        with dask.config.set(scheduler="threads", num_workers=2):
            files = _ours(source, out)
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return {"seconds": seconds, "cpu_s": cpu, "peak_mib": _peak_mib(), "files": len(files)}


def check_same_frames(a: str, b: str) -> None:
    """Every frame of every level of ``a`` equals ``b``'s (the files differ in UIDs only)."""
    import pydicom
    from pydicom.encaps import generate_frames

    for k in range(LEVELS):
        frames = []
        for folder in (a, b):
            ds = pydicom.dcmread(os.path.join(folder, f"level-{k}.dcm"))
            frames.append(list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames)))
        assert frames[0] == frames[1], f"level {k}: the frames differ"
    print(f"{a} and {b}: the same frames at all {LEVELS} levels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(SOURCE), help="folder with level0.dcm")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["ceiling", "threads", "cluster", "wsidicom"])
    parser.add_argument("--check", action="store_true", help="ceiling and ours: same frames")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    source = Path(args.source)
    if args.one:
        print(json.dumps(run_mode(args.one, source, args.out)))
        return
    if not (source / "level0.dcm").exists():
        sys.exit(f"{source}/level0.dcm is missing: run benchmarks/make_data.py")
    if args.check:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            run_ceiling(source, a)
            _ours(source, b)
            check_same_frames(a, b)
    results: dict[str, list[dict[str, object]]] = {}
    for _ in range(args.repeat):
        for mode in args.modes:  # interleaved, so that machine load hits all alike
            out = tempfile.mkdtemp(prefix=f"bench-write-{mode}-")
            try:
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        mode,
                        "--source",
                        str(source),
                        "--out",
                        out,
                    ],
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
    print("\nmode        seconds (min-max)    CPU seconds (min-max)   peak MiB (min-max)")
    for mode, runs in results.items():
        secs = [float(r["seconds"]) for r in runs]  # type: ignore[arg-type]
        cpus = [float(r["cpu_s"]) for r in runs]  # type: ignore[arg-type]
        peaks = [float(r["peak_mib"]) for r in runs]  # type: ignore[arg-type]
        print(
            f"{mode:10s}  {min(secs):7.2f} - {max(secs):7.2f}   {min(cpus):7.2f} - {max(cpus):7.2f}"
            f"   {min(peaks):8.0f} - {max(peaks):8.0f}"
        )


if __name__ == "__main__":
    main()
