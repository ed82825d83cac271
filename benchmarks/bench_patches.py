"""Patch sampling over the 16k x 16k JPEG slide: tiles read per pass, and time.

Run ``python benchmarks/make_data.py`` first. Patches of 224 x 224 at a stride of 160
(overlapping) with 16 pixels of padding cover level 0 of ``data/slide-bot``. The
benchmark counts the tiles the reader fetches (hooking ``ManifestArray._fetch``) for:

* ``PatchSampler`` iteration (strips of tile rows, each read once per pass);
* ``PatchSampler.to_dask()`` computed (one chunk per row of patches);
* the naive loop: ``slide.read_region`` once per patch;

and times them beside the ceiling: every tile decoded once from memory (libjpeg-turbo
via imagecodecs, 2 threads).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import dicom_dask
from dicom_dask.chunks.reader import ManifestArray

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")
SEEN: Counter = Counter()
_original = ManifestArray._fetch


def _counting(self, wanted):  # type: ignore[no-untyped-def]
    SEEN.update(item[0] for item in wanted)
    return _original(self, wanted)


ManifestArray._fetch = _counting  # type: ignore[method-assign]


def ceiling(path: Path) -> float:
    """Every tile decoded once from memory in 2 threads."""
    import imagecodecs

    frames = dicom_dask.open_frames(path)
    m = frames.manifest
    with open(frames.url, "rb") as f:
        data = f.read()
    tiles = [
        data[int(o) + 8 : int(o) + int(n)]
        for o, n in zip(m.offsets.ravel(), m.lengths.ravel(), strict=True)
    ]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for _ in pool.map(imagecodecs.jpeg8_decode, tiles):
            pass
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--stride", type=int, default=160)
    parser.add_argument("--padding", type=int, default=16)
    parser.add_argument("--naive-rows", type=int, default=8, help="patch rows for the naive loop")
    args = parser.parse_args()
    path = HERE / "data" / "slide-bot" / "level0.dcm"
    if not path.exists():
        raise SystemExit("run python benchmarks/make_data.py first")
    slide = dicom_dask.open_slide(path)
    level = slide.pyramid[0]
    total = int(level.tiles_present.sum())
    sampler = dicom_dask.PatchSampler(slide, args.size, stride=args.stride, padding=args.padding)
    print(f"{len(sampler)} patches of {sampler.patch_shape} over {total} tiles\n")
    print("| read | seconds | tiles fetched | fetched / tiles | most reads of one tile |")
    print("|---|---|---|---|---|")

    def row(name: str, seconds: float, scale: float = 1.0) -> None:
        fetched = sum(SEEN.values())
        most = max(SEEN.values()) if SEEN else 0
        print(f"| {name} | {seconds:.2f} | {fetched} | {fetched / total * scale:.2f} | {most} |")

    SEEN.clear()
    t0 = time.perf_counter()
    checksum = sum(int(p.pixels[0, 0, 0]) for p in sampler)
    row("PatchSampler iteration", time.perf_counter() - t0)
    SEEN.clear()
    t0 = time.perf_counter()
    arr = sampler.to_dask()
    first = arr[:, 0, 0, 0].compute(scheduler="threads")
    row("PatchSampler.to_dask() computed", time.perf_counter() - t0)
    assert int(first.astype(np.int64).sum()) == checksum
    # the naive loop on the first rows of patches, extrapolated to the whole grid
    per_row = len(np.unique(sampler.positions[:, 1]))
    subset = sampler.positions[sampler.positions[:, 1] < args.naive_rows * args.stride]
    SEEN.clear()
    t0 = time.perf_counter()
    for x, y in subset:
        slide.read_region(
            (int(x) - args.padding, int(y) - args.padding), 0, sampler.patch_shape[1::-1]
        )
    seconds = time.perf_counter() - t0
    scale = per_row / args.naive_rows
    fetched = sum(SEEN.values())
    print(
        f"| read_region per patch ({args.naive_rows} of {per_row} patch rows, x{scale:.1f}) "
        f"| {seconds * scale:.2f} | {int(fetched * scale)} | "
        f"{fetched * scale / total:.2f} | {max(SEEN.values())} |"
    )
    best = ceiling(path)
    print(f"| ceiling: every tile decoded once from memory | {best:.2f} | {total} | 1.00 | 1 |")


if __name__ == "__main__":
    main()
