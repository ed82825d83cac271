"""Cost of the default pixel transform chain, as a ratio of the untransformed read.

Run ``python benchmarks/make_data.py`` first. Two workloads, each read fully with
dask's threaded scheduler (2 workers), untransformed and ``.transformed()`` with the
default switches (float32 output), runs interleaved, best of ``--repeat``:

* ``ct-300``: 300 CT slices with Rescale Slope/Intercept (-> Hounsfield units);
* ``slide-icc``: a 16,384 x 16,384 level of 4,096 JPEG tiles whose optical path
  carries an sRGB ICC profile (-> colour-corrected RGB).

Each is measured as a full read into memory (the transformed float32 output has 2x
(CT) or 4x (RGB) the bytes of the stored values, which bounds the ratio) and as a
streamed reduction (``.mean()``: blocks are transformed and dropped), which shows
the cost of the chain itself. ICC with ``dtype=numpy.uint8`` keeps the bytes equal.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
from _timing import interleaved  # benchmarks/_timing.py

import dicom_dask

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")


def store(array: da.Array) -> np.ndarray:
    out = np.empty(array.shape, dtype=array.dtype)
    da.store(array, out, lock=False, scheduler="threads", num_workers=2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE / "data"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    data = Path(args.data)
    ct, slide_dir = data / "ct-300", data / "slide-icc"
    if not ct.exists() or not slide_dir.exists():
        raise SystemExit("run python benchmarks/make_data.py first")
    volume = dicom_dask.open_volume(ct)
    hu = volume.transformed()
    slide = dicom_dask.open_slide(slide_dir)
    icc = slide.transformed()
    icc8 = slide.transformed(dtype=np.uint8)
    assert icc.pyramid[0].transform is not None
    assert icc.pyramid[0].transform.applied[0]["icc_profile"]
    threads = {"scheduler": "threads", "num_workers": 2}
    rows = []
    t = interleaved(
        {
            "stored": lambda: volume.array.compute(**threads),
            "hu": lambda: hu.array.compute(**threads),
            "stored-mean": lambda: volume.array.mean().compute(**threads),
            "hu-mean": lambda: hu.array.mean().compute(**threads),
        },
        args.repeat,
    )
    name = "ct-300 (300 x 512² int16)"
    rows.append((name, "full read: stored int16", t["stored"], 1.0))
    rows.append(("", "full read: HU float32 (2x the bytes)", t["hu"], t["hu"] / t["stored"]))
    rows.append(("", "streamed mean: stored", t["stored-mean"], 1.0))
    rows.append(("", "streamed mean: HU", t["hu-mean"], t["hu-mean"] / t["stored-mean"]))
    t = interleaved(
        {
            "stored": lambda: store(slide.levels[0]),
            "icc": lambda: store(icc.levels[0]),
            "icc8": lambda: store(icc8.levels[0]),
            "stored-mean": lambda: slide.levels[0].mean().compute(**threads),
            "icc-mean": lambda: icc.levels[0].mean().compute(**threads),
        },
        max(3, args.repeat // 2),
    )
    name = "slide-icc (16384² RGB JPEG)"
    rows.append((name, "full read: stored uint8", t["stored"], 1.0))
    rows.append(("", "full read: ICC float32 (4x the bytes)", t["icc"], t["icc"] / t["stored"]))
    rows.append(("", "full read: ICC uint8", t["icc8"], t["icc8"] / t["stored"]))
    rows.append(("", "streamed mean: stored", t["stored-mean"], 1.0))
    rows.append(("", "streamed mean: ICC float32", t["icc-mean"], t["icc-mean"] / t["stored-mean"]))
    print(f"| {'data':28s} | {'read':38s} | {'seconds':>8s} | {'x untransformed':>15s} |")
    print(f"|{'-' * 30}|{'-' * 40}|{'-' * 10}|{'-' * 17}|")
    for name, label, seconds, ratio in rows:
        print(f"| {name:28s} | {label:38s} | {seconds:8.3f} | {ratio:15.2f} |")


if __name__ == "__main__":
    main()
