"""A 16k x 16k JPEG slide through dicom_dask, wsidicom, highdicom and pydicom, beside the ceiling.

Run ``python benchmarks/make_data.py --sparse`` first. In one process, on the same
files (4,096 JPEG baseline tiles of 256 x 256, with and without a Basic Offset
Table), this times:

* **full level**: every pixel of level 0 into one array;
* **region**: a 2,048 x 2,048 region at an unaligned offset, on an opened slide;
* **open + region**: from nothing to the first region's pixels;
* **open + 512²**: from nothing to the first 512 x 512 corner (the first view);

each through the dask arrays users hold (``levels[0]``, sliced, ``.compute()``: a
direct read of the selection), through dask's own graph (``dask.array.Array.compute``:
tasks and block assembly, as under a distributed scheduler or a reduction), and
through ``read_region``,

and prints seconds and the ratio to the decode-only **ceiling**: the tiles' bytes
read at known offsets (found beforehand, untimed) with ``os.pread``, decoded with
libjpeg-turbo (imagecodecs) in 2 threads (started beforehand, untimed) and pasted into
the output. dicom_dask runs
dask's threaded scheduler with 2 workers. Timings are the best of ``--repeat`` runs
(slow third-party full reads run once). Also measured: opening the 100,000-tile
TILED_SPARSE instance (cold, and from its saved index), and the peak RSS of
``to_ome_zarr`` converting the slide (in a child process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _ceiling import Ceiling  # benchmarks/_ceiling.py
from _timing import best  # benchmarks/_timing.py

import dicom_dask

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")
LOCATION = (3037, 5101)  # (x, y), not on the 256-pixel tile grid
SIZE = (2048, 2048)  # (width, height)


def slide_rows(folder: Path, repeat: int, slow: bool) -> list[tuple[str, str, float, float]]:
    import dask.array as da
    import highdicom as hd
    import pydicom
    from wsidicom import WsiDicom
    from wsidicom.config import Settings

    path = folder / "level0.dcm"
    ceiling = Ceiling(path)
    (x, y), (w, h) = LOCATION, SIZE
    full = ceiling.shape
    rows: list[tuple[str, str, float, float]] = []

    def add(workload: str, label: str, seconds: float, reference: float) -> None:
        rows.append((workload, label, seconds, seconds / reference))

    # -- full level ---------------------------------------------------------------
    c_full = best(lambda: ceiling.read(0, 0, *full), repeat)
    add("full level", "ceiling (pread + libjpeg-turbo, 2 threads)", c_full, c_full)

    def dd_store() -> np.ndarray:
        level = dicom_dask.open_slide(folder).levels[0]
        out = np.empty(level.shape, dtype=level.dtype)
        da.store(level, out, lock=False, scheduler="threads", num_workers=2)
        return out

    def dd_compute() -> np.ndarray:
        level = dicom_dask.open_slide(folder).levels[0]
        return level.compute(scheduler="threads", num_workers=2)

    def dd_graph() -> np.ndarray:  # dask's own compute: run the graph, concatenate blocks
        level = dicom_dask.open_slide(folder).levels[0]
        return da.Array.compute(level, scheduler="threads", num_workers=2)

    def dd_region() -> np.ndarray:
        return dicom_dask.open_slide(folder).read_region((0, 0), 0, (full[1], full[0]))

    add("full level", "dicom_dask open + read_region(level 0)", best(dd_region, repeat), c_full)
    add("full level", "dicom_dask open + da.store(levels[0])", best(dd_store, repeat), c_full)
    add("full level", "dicom_dask open + levels[0].compute()", best(dd_compute, repeat), c_full)
    add(
        "full level",
        "  the same through dask's graph + concatenate",
        best(dd_graph, repeat),
        c_full,
    )

    def wsi_full() -> np.ndarray:
        with WsiDicom.open(folder) as wsi:
            return np.asarray(wsi.read_region((0, 0), 0, (full[1], full[0])))

    add("full level", "wsidicom open + read_region(level 0)", best(wsi_full, repeat), c_full)
    if slow:

        def hd_full() -> np.ndarray:
            im = hd.imread(path, lazy_frame_retrieval=True)
            return im.get_total_pixel_matrix(dtype=np.uint8, apply_icc_profile=False)

        add(
            "full level",
            "highdicom imread(lazy) + get_total_pixel_matrix",
            best(hd_full, 1),
            c_full,
        )

        def pyd_full() -> np.ndarray:
            frames = pydicom.dcmread(path).pixel_array
            out = np.empty((*full, 3), dtype=np.uint8)
            nx = full[1] // 256
            for k, f in enumerate(frames):
                out[(k // nx) * 256 : (k // nx + 1) * 256, (k % nx) * 256 : (k % nx + 1) * 256] = f
            return out

        add("full level", "pydicom dcmread + pixel_array + paste", best(pyd_full, 1), c_full)

    # -- region on an opened slide ---------------------------------------------------
    c_region = best(lambda: ceiling.read(y, x, h, w), repeat * 3)
    add("2048² region", "ceiling (pread + libjpeg-turbo, 2 threads)", c_region, c_region)
    slide = dicom_dask.open_slide(folder)
    add(
        "2048² region",
        "dicom_dask slide.read_region",
        best(lambda: slide.read_region(LOCATION, 0, SIZE), repeat * 3),
        c_region,
    )
    level0 = slide.levels[0]
    add(
        "2048² region",
        "dicom_dask levels[0][y:y+h, x:x+w].compute()",
        best(
            lambda: level0[y : y + h, x : x + w].compute(scheduler="threads", num_workers=2),
            repeat * 3,
        ),
        c_region,
    )
    add(
        "2048² region",
        "  the same through dask's graph (threads, 2)",
        best(
            lambda: da.Array.compute(
                level0[y : y + h, x : x + w], scheduler="threads", num_workers=2
            ),
            repeat * 3,
        ),
        c_region,
    )
    add(
        "2048² region",
        "  .mean() of it (dask's graph, threads, 2)",
        best(
            lambda: level0[y : y + h, x : x + w].mean().compute(scheduler="threads", num_workers=2),
            repeat * 3,
        ),
        c_region,
    )
    # wsidicom caches decoded tiles: a repeated region would be served from memory
    wsi = WsiDicom.open(
        folder, settings=Settings(decoded_frame_cache_size=0, encoded_frame_cache_size=0)
    )
    wsi.read_region(LOCATION, 0, SIZE)  # warm: wsidicom parses offsets on first read
    add(
        "2048² region",
        "wsidicom read_region (tile caches off)",
        best(lambda: np.asarray(wsi.read_region(LOCATION, 0, SIZE)), repeat * 3),
        c_region,
    )
    wsi.close()

    def hd_region(image: Any) -> np.ndarray:
        return image.get_total_pixel_matrix(
            row_start=y,
            row_end=y + h,
            column_start=x,
            column_end=x + w,
            as_indices=True,
            dtype=np.uint8,
            apply_icc_profile=False,
        )

    im = hd.imread(path, lazy_frame_retrieval=True)
    add(
        "2048² region",
        "highdicom get_total_pixel_matrix(region)",
        best(lambda: hd_region(im), 1),
        c_region,
    )

    # -- open + first 512² (the first view: a small corner) ---------------------------
    c_first = best(lambda: ceiling.read(0, 0, 512, 512), repeat * 10)
    add("open + 512²", "ceiling (4 tiles: offsets known)", c_first, c_first)

    def dd_first() -> np.ndarray:
        return dicom_dask.open_slide(folder).levels[0][:512, :512].compute()

    def dd_first_graph() -> np.ndarray:
        level = dicom_dask.open_slide(folder).levels[0]
        return da.Array.compute(level[:512, :512], scheduler="threads", num_workers=2)

    def dd_first_region() -> np.ndarray:
        return dicom_dask.open_slide(folder).read_region((0, 0), 0, (512, 512))

    def wsi_first512() -> np.ndarray:
        with WsiDicom.open(folder) as wsi:
            return np.asarray(wsi.read_region((0, 0), 0, (512, 512)))

    add("open + 512²", "dicom_dask open + levels[0][:512, :512].compute()",
        best(dd_first, repeat * 10), c_first)  # fmt: skip
    add("open + 512²", "  the same through dask's graph (threads, 2)",
        best(dd_first_graph, repeat * 10), c_first)  # fmt: skip
    add("open + 512²", "dicom_dask open + read_region", best(dd_first_region, repeat * 10),
        c_first)  # fmt: skip
    add("open + 512²", "wsidicom open + read_region", best(wsi_first512, repeat * 10), c_first)

    # -- open + first region ---------------------------------------------------------
    add("open + region", "ceiling (region only: offsets known)", c_region, c_region)
    add(
        "open + region",
        "dicom_dask open_slide + levels[0][y:y+h, x:x+w].compute()",
        best(
            lambda: dicom_dask.open_slide(folder).levels[0][y : y + h, x : x + w].compute(),
            repeat * 3,
        ),
        c_region,
    )
    add(
        "open + region",
        "dicom_dask open_slide + read_region",
        best(lambda: dicom_dask.open_slide(folder).read_region(LOCATION, 0, SIZE), repeat * 3),
        c_region,
    )

    def wsi_first() -> np.ndarray:
        with WsiDicom.open(folder) as wsi:
            return np.asarray(wsi.read_region(LOCATION, 0, SIZE))

    add("open + region", "wsidicom open + read_region", best(wsi_first, repeat * 3), c_region)

    def hd_first() -> np.ndarray:
        return hd_region(hd.imread(path, lazy_frame_retrieval=True))

    add("open + region", "highdicom imread(lazy) + region", best(hd_first, 1), c_region)
    return rows


def sparse_open(path: Path, repeat: int) -> list[tuple[str, float]]:
    t0 = time.perf_counter()
    level = dicom_dask.open_tiled(path)
    cold = time.perf_counter() - t0
    slide = dicom_dask.open_slide(path)
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index.json"
        slide.save_index(index)
        warm = best(lambda: dicom_dask.open_slide(index=index).levels[0], repeat)
        size = index.stat().st_size
    return [
        (
            f"open_tiled, cold ({level.manifest.grid_shape[2:]} grid, "
            f"{len(level.manifest)} tiles, positions by {level.image.positions.method})",
            cold,
        ),
        (f"open_slide(index=...) from the saved index ({size / 2**20:.1f} MiB)", warm),
    ]


CONVERT = """
import sys, time, tempfile, dask, dicom_dask, zarr, numpy as np
slide = dicom_dask.open_slide(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp, dask.config.set(scheduler="threads", num_workers=2):
    t0 = time.perf_counter()
    dicom_dask.to_ome_zarr(slide, tmp + "/out.zarr", levels=1, progress=False)
    seconds = time.perf_counter() - t0
    out = zarr.open_group(tmp + "/out.zarr", mode="r")["0"]
    y, x = 5101, 3037
    same = np.array_equal(np.moveaxis(out[:, y:y+2048, x:x+2048], 0, -1),
                          slide.read_region((x, y), 0, (2048, 2048)))
# VmHWM belongs to this process image (ru_maxrss survives exec: it would report the parent)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(seconds, hwm / 1024, same)
"""


def convert(folder: Path) -> tuple[float, float, bool]:
    out = subprocess.run(
        [sys.executable, "-c", CONVERT, str(folder)], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[0]), float(out[1]), out[2] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip highdicom/pydicom full reads")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument(
        "--no-extras", action="store_true", help="skip the sparse open and to_ome_zarr"
    )
    args = parser.parse_args()
    data = Path(args.data)
    report: dict[str, object] = {}
    for name in ("slide-bot", "slide-nobot"):
        folder = data / name
        if not (folder / "level0.dcm").exists():
            raise SystemExit(f"{folder} is missing: run python benchmarks/make_data.py")
        rows = slide_rows(folder, args.repeat, slow=not args.quick)
        report[name] = rows
        print(f"\n### {name}: 16,384 x 16,384 RGB, 4,096 JPEG baseline tiles of 256 x 256")
        print(f"| {'workload':14s} | {'reader':58s} | {'seconds':>8s} | {'x ceiling':>9s} |")
        print(f"|{'-' * 16}|{'-' * 60}|{'-' * 10}|{'-' * 11}|")
        for workload, label, seconds, ratio in rows:
            print(f"| {workload:14s} | {label:58s} | {seconds:8.4f} | {ratio:9.2f} |")
    sparse = data / "sparse-100k.dcm"
    if args.no_extras:
        pass
    elif sparse.exists():
        print("\n### sparse-100k.dcm: TILED_SPARSE, 100,172 tiles in shuffled order")
        for label, seconds in sparse_open(sparse, args.repeat):
            print(f"| {label:80s} | {seconds:7.3f} s |")
            report[label] = seconds
    if args.no_extras:
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return
    seconds, rss, same = convert(data / "slide-bot")
    print(
        f"\n### to_ome_zarr(slide-bot): {seconds:.2f} s, peak RSS {rss:.0f} MiB, "
        f"pixels identical: {same}"
    )
    report["to_ome_zarr"] = {"seconds": seconds, "peak_rss_mib": rss, "identical": same}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
