"""Open + first 512² of the 16k slide, stage by stage, beside the 4-tile decode ceiling.

Run ``python benchmarks/make_data.py`` first. ``open_slide(folder).levels[0][:512, :512]
.compute()`` is split into the steps ``open_slide`` takes (the same functions, called
in the same order) and each is timed with ``time.perf_counter``; the rows print the
median and the best over ``--runs`` repetitions, in milliseconds, then the whole
call and the ceiling (4 tiles read at known offsets, decoded in 2 threads, pasted).
The stages run in the order of an open, so each one finds the caches as an open
leaves them.

The last row is a floor for any reader that parses the header with pydicom:
``pydicom.dcmread(stop_before_pixels=True)``, the three sequences the tile layout
needs, then the ceiling's read. It lists no folder, reads no offset table and
builds no array, so dicom_dask cannot be faster than it while pydicom parses the
header.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from _ceiling import Ceiling  # benchmarks/_ceiling.py

import dicom_dask
from dicom_dask.images.level import merge_level
from dicom_dask.images.slides_grouping import group_slides
from dicom_dask.images.sources import expand_sources, index_many
from dicom_dask.images.tiled import tiled_image

HERE = Path(__file__).resolve().parent
STAGES = (
    ("expand", "list the folder"),
    ("index", "header (pydicom) and Basic Offset Table"),
    ("tiled", "tile layout: attributes, optical paths, functional groups"),
    ("group", "group instances into slides"),
    ("merge", "merge the level: chunk manifest"),
    ("array", "level.array: reader and dask array"),
    ("slice", "[:512, :512]"),
    ("compute", "compute(): 4 tiles read and decoded"),
)


FLOOR = "floor with pydicom"
#: The sequences ``tiled_image`` parses for the layout.
SEQUENCES = (
    "SharedFunctionalGroupsSequence",
    "OpticalPathSequence",
    "TotalPixelMatrixOriginSequence",
)


def one_open(folder: Path, times: dict[str, list[float]]) -> None:
    """The steps of ``open_slide(folder).levels[0][:512, :512].compute()``, timed."""

    def step(name: str, func: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = func()
        times[name].append(time.perf_counter() - t0)
        return out

    t_all = time.perf_counter()
    urls, discovered = step("expand", lambda: expand_sources(folder))
    indexes = step("index", lambda: index_many(urls, skip_non_images=discovered))
    images = step("tiled", lambda: [tiled_image(ix) for ix in indexes])
    group = step("group", lambda: group_slides(images)[0].images)
    options = {
        "raw": False,
        "backend": "auto",
        "fill_value": 0,
        "storage_options": None,
        "chunk_edge": 2048,
    }
    level = step("merge", lambda: merge_level(list(group), **options))
    array = step("array", lambda: level.array)
    view = step("slice", lambda: array[:512, :512])
    step("compute", view.compute)
    times["sum of the stages"].append(time.perf_counter() - t_all)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=HERE / "data" / "slide-bot")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    if not args.folder.exists():
        raise SystemExit(f"{args.folder} not found: run python benchmarks/make_data.py first")
    path = next(args.folder.glob("*.dcm"))
    ceiling = Ceiling(path)

    def pydicom_floor() -> None:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in SEQUENCES:
            ds[keyword].value[0]  # parsed, as the tile layout parses them
        ceiling.read(0, 0, 512, 512)

    names = [name for name, _ in STAGES] + ["sum of the stages", "open_slide + slice + compute"]
    times: dict[str, list[float]] = {name: [] for name in [*names, "ceiling", FLOOR]}
    for _ in range(20):  # warm: imports, the decoding pool, the page cache
        one_open(args.folder, {name: [] for name in times})
    for _ in range(args.runs):  # interleaved, so that drift hits every row alike
        one_open(args.folder, times)
        t0 = time.perf_counter()
        dicom_dask.open_slide(args.folder).levels[0][:512, :512].compute()
        times["open_slide + slice + compute"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ceiling.read(0, 0, 512, 512)
        times["ceiling"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pydicom_floor()
        times[FLOOR].append(time.perf_counter() - t0)
    c_best = min(times["ceiling"])
    labels = dict(STAGES)
    print(f"open + first 512² of {args.folder.name}, {args.runs} runs (ms)\n")
    print(f"| {'stage':30s} | {'what':58s} | {'median':>7s} | {'best':>7s} |")
    print(f"|{'-' * 32}|{'-' * 60}|{'-' * 9}|{'-' * 9}|")
    labels["ceiling"] = "4 tiles at known offsets"
    labels[FLOOR] = "pydicom's header + 3 sequences, then the ceiling"
    for name in [*names, "ceiling", FLOOR]:
        values = times[name]
        what = labels.get(name, "")
        print(
            f"| {name:30s} | {what:58s} | {statistics.median(values) * 1e3:7.3f} "
            f"| {min(values) * 1e3:7.3f} |"
        )
    c_median = statistics.median(times["ceiling"])
    print()
    for name in ("open_slide + slice + compute", FLOOR):
        print(
            f"{name}: best {min(times[name]) / c_best:.2f}x the best ceiling, "
            f"median {statistics.median(times[name]) / c_median:.2f}x the median ceiling"
        )


if __name__ == "__main__":
    main()
