"""The 16384² bench slide to a 7-level OME-Zarr pyramid: dicom_dask, its ceiling, ngff-zarr.

Modes (each a fresh subprocess, so that imports and caches are its own):

* ``ceiling``: the least work that gives those files, in one process with 2 threads:
  each thread takes a 2048² block, reads its 64 JPEG tiles with ``os.pread`` at offsets
  known beforehand, decodes them with imagecodecs (libjpeg-turbo), lays the block out
  ``(c, y, x)``, compresses each 1024² chunk with zstd (level 3, as written), halves the
  block (2 x 2 mean in uint16) and does the same for the levels below, down to level 6,
  and writes the compressed chunks to files. Metadata is not written.

Every mode imports its modules before the clock starts and opens the slide after.
* ``threads``: ``to_ome_zarr(slide, levels=7)`` on dask's threaded scheduler (2 threads);
* ``cluster``: the same on a 2-process ``LocalCluster`` (1 thread each; the cluster's
  start is not timed);
* ``ngff-zarr``: ``to_multiscales`` (scale factors 2 ... 64, ``DASK_BIN_SHRINK``: the
  same 2 x 2 mean; its default Gaussian is slower still) + ``to_ngff_zarr`` of the same
  dask level ``(c, y, x)`` (2 threads).

Input: ``benchmarks/data/slide-bot/level0.dcm`` (``make_data.py``; ``--tiles 256`` makes a
4096² slide for a quick run, then pass ``--source``). Usage:
``python benchmarks/bench_ome_zarr.py [--repeat 2] [--modes ceiling threads ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "data" / "slide-bot"
LEVELS = 7
BLOCK = 2048
CHUNK = 1024


def _halve(block: np.ndarray) -> np.ndarray:
    """2 x 2 mean of a ``(c, y, x)`` uint8 block with even y and x (rounded half up)."""
    total = block[:, 0::2, 0::2].astype(np.uint16)
    total += block[:, 1::2, 0::2]
    total += block[:, 0::2, 1::2]
    total += block[:, 1::2, 1::2]
    total += 2
    total >>= 2
    return total.astype(np.uint8)


def ceiling(source: Path, out: str) -> dict[str, object]:
    """Decode + downsample + zstd + write, the least-work way (see the module docstring)."""
    import imagecodecs

    sys.path.insert(0, str(HERE))
    from _ceiling import fastest_decoder

    import dicom_dask
    from dicom_dask.enums import FrameEncoding

    _warm_imports()
    t0 = time.perf_counter()  # imports excluded, opening included, as for the others
    level = dicom_dask.open_tiled(source / "level0.dcm")
    m = level.manifest
    header = np.where(m.encoding[0, 0] == FrameEncoding.ITEMS.value, 8, 0)
    offsets = m.offsets[0, 0].astype(np.int64) + header
    lengths = m.lengths[0, 0].astype(np.int64) - header
    th, tw = level.tile_shape
    rows, cols = level.matrix_shape
    decode = fastest_decoder("jpeg")
    path = str(source / "level0.dcm")
    for k in range(LEVELS):
        os.makedirs(f"{out}/{k}", exist_ok=True)

    def one(origin: tuple[int, int]) -> int:
        y0, x0 = origin
        block = np.empty((3, BLOCK, BLOCK), dtype=np.uint8)
        fd = os.open(path, os.O_RDONLY)
        try:
            for r in range(y0 // th, (y0 + BLOCK) // th):
                for c in range(x0 // tw, (x0 + BLOCK) // tw):
                    tile = decode(os.pread(fd, int(lengths[r, c]), int(offsets[r, c])))
                    ys, xs = r * th - y0, c * tw - x0
                    block[:, ys : ys + th, xs : xs + tw] = tile.transpose(2, 0, 1)
        finally:
            os.close(fd)
        written = 0
        for k in range(LEVELS):
            edge = block.shape[1]
            step = min(CHUNK, edge)
            for cy in range(0, edge, step):
                for cx in range(0, edge, step):
                    chunk = np.ascontiguousarray(block[:, cy : cy + step, cx : cx + step])
                    data = imagecodecs.zstd_encode(chunk, level=3)
                    name = f"{out}/{k}/{y0 >> k}.{cy}.{x0 >> k}.{cx}"
                    with open(name, "wb") as f:
                        f.write(data)
                    written += len(data)
            if k + 1 < LEVELS:
                block = _halve(block)
        return written

    blocks = [(y, x) for y in range(0, rows, BLOCK) for x in range(0, cols, BLOCK)]
    with ThreadPoolExecutor(2) as pool:
        total = sum(pool.map(one, blocks))
    return {"seconds": time.perf_counter() - t0, "bytes": total}


def _warm_imports() -> None:
    """Import what the timed code imports lazily, so that no mode times imports."""
    import dask.array  # noqa: F401
    import imagecodecs  # noqa: F401
    import numcodecs  # noqa: F401
    import zarr  # noqa: F401

    import dicom_dask.integrations.ome_zarr  # noqa: F401


def ours(source: Path, out: str, cluster: bool) -> dict[str, object]:
    import dask

    import dicom_dask

    _warm_imports()

    if cluster:
        import distributed

        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as c,
            distributed.Client(c) as client,
        ):
            client.run(_warm_imports)  # the workers' imports are not timed either
            t0 = time.perf_counter()
            slide = dicom_dask.open_slide(source)
            dicom_dask.to_ome_zarr(slide, out, levels=LEVELS, progress=False)
            return {"seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    slide = dicom_dask.open_slide(source)
    with dask.config.set(scheduler="threads", num_workers=2):
        dicom_dask.to_ome_zarr(slide, out, levels=LEVELS, progress=False)
    return {"seconds": time.perf_counter() - t0}


def ngff(source: Path, out: str) -> dict[str, object]:
    import dask
    import ngff_zarr

    import dicom_dask

    _warm_imports()

    t0 = time.perf_counter()
    slide = dicom_dask.open_slide(source)
    spacing = [v * 1000 for v in slide.pixel_spacings[0]]
    image = ngff_zarr.to_ngff_image(
        slide.levels[0].transpose(2, 0, 1),
        dims=("c", "y", "x"),
        scale={"y": spacing[0], "x": spacing[1]},
        axes_units={"y": "micrometer", "x": "micrometer"},
    )
    with dask.config.set(scheduler="threads", num_workers=2):
        multiscales = ngff_zarr.to_multiscales(
            image,
            scale_factors=[2**k for k in range(1, LEVELS)],
            method=ngff_zarr.Methods.DASK_BIN_SHRINK,  # the same 2 x 2 mean as ours
            chunks=CHUNK,
        )
        ngff_zarr.to_ngff_zarr(out, multiscales)
    return {"seconds": time.perf_counter() - t0}


def run_mode(mode: str, source: Path, out: str) -> dict[str, object]:
    if mode == "ceiling":
        return ceiling(source, out)
    if mode in ("threads", "cluster"):
        return ours(source, out, mode == "cluster")
    return ngff(source, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(SOURCE))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--modes", nargs="+", default=["ceiling", "threads", "cluster", "ngff-zarr"]
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    source = Path(args.source)
    if args.child:
        out = tempfile.mkdtemp(prefix="bench-ome-zarr-")
        try:
            print(json.dumps(run_mode(args.child, source, out + "/out.ome.zarr")))
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for mode in args.modes:  # interleaved, so machine drift hits every mode alike
            done = subprocess.run(
                [sys.executable, __file__, "--source", str(source), "--child", mode],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            best[mode] = min(best.get(mode, float("inf")), float(result["seconds"]))
            print(f"{mode:10s} {result['seconds']:7.2f} s", flush=True)
    print(f"\n## {source.name} -> {LEVELS}-level OME-Zarr (best of {args.repeat})")
    base = best.get("ceiling")
    for mode, seconds in best.items():
        ratio = f"  {seconds / base:5.2f}x the ceiling" if base else ""
        print(f"{mode:10s} {seconds:7.2f} s{ratio}")


if __name__ == "__main__":
    main()
