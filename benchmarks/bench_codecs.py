"""Decoders per codec, the zarr path and files without an offset table, beside their ceilings.

Run ``python benchmarks/make_data.py --codecs`` first (``--codecs-only`` adds just the
per-codec slides to existing data). In one process, with runs interleaved so that
the machine's drift hits every row alike (best of ``--repeat``), this times:

* **per codec** (4,096 x 4,096 RGB, 256 tiles of 256 x 256: JPEG baseline, JPEG 2000,
  HTJ2K, JPEG-LS lossless, RLE): ``levels[0].compute()`` through the dask array and
  ``read_region`` of the whole level, against that codec's **ceiling**: the tiles'
  bytes read with ``os.pread`` at offsets known beforehand (untimed), decoded by the
  fastest imagecodecs function for the codec in 2 threads and pasted (RLE: each
  segment through ``packbits_decode``, bytes interleaved with NumPy);
* **the zarr path** on the 16k x 16k JPEG slide: ``slide.zarr["0"][...]`` (the full
  level, channel first) and a 2,048 x 2,048 region, and ``frames.zarr[...]`` of the
  4,096 tiles, against the libjpeg-turbo ceiling of the same pixels; with no setting
  (dicom_dask's pipeline, which its codec selects), ``zarr_settings()``, and zarr's own
  ``BatchedCodecPipeline`` named explicitly;
* **open + first 512 x 512 without offset table**: from nothing to the pixels of
  the top-left 512 x 512 of the 16k slide with an empty Basic Offset Table, through
  the dask array and ``read_region``, beside wsidicom and the ceiling (4 tiles,
  offsets known).

Ratios are to the ceiling; targets (issue 15): every codec <= 1.2x, zarr path
<= 1.5x, the no-BOT first region <= wsidicom.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _ceiling import Ceiling  # benchmarks/_ceiling.py
from _timing import interleaved  # benchmarks/_timing.py
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.registry import register_pipeline

import dicom_dask

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")
CODECS = ("jpeg", "j2k", "htj2k", "jpegls", "rle")


def _check(got: np.ndarray, expected: np.ndarray, label: str, exact: bool) -> None:
    if exact:
        same = np.array_equal(got, expected)
    else:  # libjpeg-turbo in both: equal unless a different IDCT were picked
        same = (
            got.shape == expected.shape
            and np.abs(got.astype(np.int16) - expected.astype(np.int16)).max() <= 16
        )
    if not same:
        raise SystemExit(f"{label}: the pixels differ from the ceiling's")


def one_codec(folder: Path, codec: str, repeat: int) -> list[tuple[str, str, float, float]]:
    ceiling = Ceiling(folder / "level0.dcm", codec)
    full = ceiling.shape
    expected = ceiling.read(0, 0, *full)
    slide = dicom_dask.open_slide(folder)
    backend = slide.pyramid[0]._codecs("yxs")[-1]["configuration"]["backend"]
    _check(slide.levels[0].compute(), expected, codec, exact=True)

    def dask_full() -> np.ndarray:
        level = dicom_dask.open_slide(folder).levels[0]
        return level.compute(scheduler="threads", num_workers=2)

    def region_full() -> np.ndarray:
        return dicom_dask.open_slide(folder).read_region((0, 0), 0, (full[1], full[0]))

    times = interleaved(
        {
            "ceiling": lambda: ceiling.read(0, 0, *full),
            "dask": dask_full,
            "read_region": region_full,
        },
        repeat,
    )
    c = times["ceiling"]
    return [
        (codec, "ceiling (pread + fastest imagecodecs, 2 threads)", c, 1.0),
        (codec, f"open + levels[0].compute() [{backend}]", times["dask"], times["dask"] / c),
        ("", "open + read_region(level 0)", times["read_region"], times["read_region"] / c),
    ]


def codec_rows(
    data: Path, repeat: int, codecs: tuple[str, ...] = CODECS
) -> list[tuple[str, str, float, float]]:
    rows = []
    for codec in codecs:
        folder = data / "codecs" / codec
        if not (folder / "level0.dcm").exists():
            raise SystemExit(f"{folder} is missing: run python benchmarks/make_data.py --codecs")
        rows += one_codec(folder, codec, repeat)
    return rows


class ZarrOwnPipeline(BatchedCodecPipeline):
    """zarr's default pipeline under a name of its own: naming it keeps dicom_dask from
    selecting its pipeline, to time zarr's own."""


register_pipeline(ZarrOwnPipeline)


def _kerchunk_level(folder: Path) -> Any:
    """Level 0 of the slide's kerchunk references (the OME-Zarr group), opened with plain
    zarr through fsspec's ReferenceFileSystem."""
    import fsspec
    import zarr

    refs = dicom_dask.to_kerchunk(folder)
    fs = fsspec.filesystem("reference", fo=refs, asynchronous=True)
    store = zarr.storage.FsspecStore(fs, read_only=True, path="")
    return zarr.open_group(store, mode="r")["0"]


def zarr_rows(data: Path, repeat: int) -> list[tuple[str, str, float, float]]:
    import zarr
    import zarr.core.codec_pipeline as pipelines

    folder = data / "slide-bot"
    ceiling = Ceiling(folder / "level0.dcm", "jpeg")
    full = ceiling.shape
    y, x, h, w = 5101, 3037, 2048, 2048
    slide = dicom_dask.open_slide(folder)
    frames = dicom_dask.open_frames(data / "tiles-jpeg-4096.dcm")  # the same 4,096 tiles
    # no setting: dicom_dask's pipeline, which the codec selects as zarr opens the array
    configs: dict[str, dict[str, Any]] = {
        "defaults": {},
        "tuned": dicom_dask.zarr_settings(),
        "own": {"codec_pipeline.path": f"{__name__}.ZarrOwnPipeline"},
    }
    if hasattr(pipelines, "FusedCodecPipeline"):  # zarr >= 3.4: its own opt-in pipeline
        configs["fused"] = {"codec_pipeline.path": "zarr.core.codec_pipeline.FusedCodecPipeline"}
    arrays: dict[str, Any] = {}
    for setting, config in configs.items():
        with zarr.config.set(config):  # zarr picks an array's pipeline when it opens it
            arrays[f"slide {setting}"] = zarr.open_group(slide.store, mode="r")["0"]
            arrays[f"frames {setting}"] = zarr.open_array(frames.store, mode="r")
            arrays[f"kerchunk {setting}"] = _kerchunk_level(folder)
    pipelines = {name: type(a._async_array.codec_pipeline).__name__ for name, a in arrays.items()}
    print("codec pipelines:", ", ".join(f"{k}: {v}" for k, v in pipelines.items()))
    expected = ceiling.read(y, x, h, w)
    for name, array in arrays.items():
        if "frames" not in name:
            _check(np.moveaxis(array[:, y : y + h, x : x + w], 0, -1), expected, name, False)

    def reader(array: Any, region: bool) -> Any:
        if region:
            return lambda: array[:, y : y + h, x : x + w]
        return lambda: array[...]

    full_funcs: dict[str, Any] = {"ceiling": lambda: ceiling.read(0, 0, *full)}
    region_funcs: dict[str, Any] = {"ceiling": lambda: ceiling.read(y, x, h, w)}
    for name, array in arrays.items():
        full_funcs[name] = reader(array, False)
        if "frames" not in name:
            region_funcs[name] = reader(array, True)
    times = interleaved(full_funcs, repeat)
    region = interleaved(region_funcs, repeat * 3)
    cf, cr = times["ceiling"], region["ceiling"]
    labels = {
        "slide": 'slide.zarr["0"][...] (channel first)',
        "frames": "zarr.open_array(frames.store)[...] (4,096 frames)",
        "kerchunk": "kerchunk refs, plain zarr: level 0 (channel first)",
    }
    rows = [("zarr", "ceiling, full level (libjpeg-turbo, 2 threads)", cf, 1.0)]
    suffixes = {
        "defaults": " [no setting]",
        "tuned": " [zarr_settings()]",
        "own": " [zarr's own BatchedCodecPipeline]",
        "fused": " [zarr's FusedCodecPipeline]",
    }
    for setting in configs:
        suffix = suffixes[setting]
        for kind, label in labels.items():
            t = times[f"{kind} {setting}"]
            rows.append(("zarr", label + suffix, t, t / cf))
    rows.append(("zarr", "ceiling, 2048² region", cr, 1.0))
    for setting in configs:
        suffix = suffixes[setting]
        for kind in ("slide", "kerchunk"):
            t = region[f"{kind} {setting}"]
            rows.append(("zarr", f"{kind} level 0 [:, y:y+h, x:x+w]" + suffix, t, t / cr))
    print(f"zarr {zarr.__version__}; zarr_settings() = {dicom_dask.zarr_settings()}")
    return rows


def nobot_rows(data: Path, repeat: int) -> list[tuple[str, str, float, float]]:
    from wsidicom import WsiDicom

    folder = data / "slide-nobot"
    ceiling = Ceiling(folder / "level0.dcm", "jpeg")

    def dask_first() -> np.ndarray:
        level = dicom_dask.open_slide(folder).levels[0]
        return level[:512, :512].compute(scheduler="threads", num_workers=2)

    def region_first() -> np.ndarray:
        return dicom_dask.open_slide(folder).read_region((0, 0), 0, (512, 512))

    def wsi_first() -> np.ndarray:
        with WsiDicom.open(folder) as wsi:
            return np.asarray(wsi.read_region((0, 0), 0, (512, 512)))

    def open_only() -> Any:
        return dicom_dask.open_slide(folder)

    times = interleaved(
        {
            "ceiling": lambda: ceiling.read(0, 0, 512, 512),
            "dask": dask_first,
            "read_region": region_first,
            "open": open_only,
            "wsidicom": wsi_first,
        },
        repeat * 3,
    )
    c, wsi = times["ceiling"], times["wsidicom"]
    return [
        ("no BOT", "ceiling (4 tiles, offsets known)", c, 1.0),
        (
            "no BOT",
            "dicom_dask open_slide + levels[0][:512, :512]",
            times["dask"],
            times["dask"] / c,
        ),
        (
            "no BOT",
            "dicom_dask open_slide + read_region",
            times["read_region"],
            times["read_region"] / c,
        ),
        ("no BOT", "dicom_dask open_slide only (fragment scan)", times["open"], times["open"] / c),
        ("no BOT", "wsidicom open + read_region", wsi, wsi / c),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("codecs", "zarr", "nobot"), action="append")
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated subset")
    args = parser.parse_args()
    data = Path(args.data)
    parts = args.only or ["codecs", "zarr", "nobot"]
    rows: list[tuple[str, str, float, float]] = []
    t0 = time.perf_counter()
    if "codecs" in parts:
        rows += codec_rows(data, args.repeat, tuple(args.codecs.split(",")))
    if "zarr" in parts:
        rows += zarr_rows(data, args.repeat)
    if "nobot" in parts:
        rows += nobot_rows(data, args.repeat)
    width = max(55, *(len(label) for _, label, _, _ in rows))
    print(f"| {'workload':8s} | {'reader':{width}s} | {'seconds':>8s} | {'x ceiling':>9s} |")
    print(f"|{'-' * 10}|{'-' * (width + 2)}|{'-' * 10}|{'-' * 11}|")
    for workload, label, seconds, ratio in rows:
        print(f"| {workload:8s} | {label:{width}s} | {seconds:8.4f} | {ratio:9.2f} |")
    load = os.getloadavg()[0]
    print(
        f"\n({time.perf_counter() - t0:.0f} s; load average {load:.1f} on {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
