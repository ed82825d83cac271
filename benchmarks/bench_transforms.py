"""Cost of the default pixel transform chain, as a ratio of the untransformed read.

Run ``python benchmarks/make_data.py`` first. Each workload is read fully with dask's
threaded scheduler (2 workers), untransformed and ``.transformed()`` with the default
switches (float32 output), runs interleaved, best of ``--repeat``:

* ``ct-300``: 300 native CT slices, 512 x 512, 12 of 16 bits stored, Rescale
  Slope/Intercept (-> Hounsfield units). Also read as the stored values cast to
  float32 with no transform at all (``astype``: what writing float32 output costs by
  itself), with ``dtype=numpy.int16`` (Hounsfield units in the stored bytes) and with
  ``Volume.compute()`` (one array filled directly, no dask assembly);
* ``ct-300-jpegls``: the same series in JPEG-LS Lossless (decoding dominates);
* ``slide-icc``: a 16,384 x 16,384 level of 4,096 JPEG tiles whose optical path
  carries an sRGB ICC profile (-> colour-corrected RGB).

Each is measured as a full read into memory (the transformed float32 output has 2x
(CT) or 4x (RGB) the bytes of the stored values, which bounds the ratio of an
uncompressed read) and as a streamed reduction (``.mean()``: blocks are transformed
and dropped). ICC with ``dtype=numpy.uint8`` keeps the bytes equal.
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
    ct, ct_jpegls, slide_dir = data / "ct-300", data / "ct-300-jpegls", data / "slide-icc"
    if not all(p.exists() for p in (ct, ct_jpegls, slide_dir)):
        raise SystemExit("run python benchmarks/make_data.py first")
    volume = dicom_dask.open_volume(ct)
    hu = volume.transformed()
    hu16 = volume.transformed(dtype=np.int16)
    compressed = dicom_dask.open_volume(ct_jpegls)
    compressed_hu = compressed.transformed()
    slide = dicom_dask.open_slide(slide_dir)
    icc = slide.transformed()
    icc8 = slide.transformed(dtype=np.uint8)
    assert icc.pyramid[0].transform is not None
    assert icc.pyramid[0].transform.applied[0]["icc_profile"]
    threads = {"scheduler": "threads", "num_workers": 2}
    # every variant gives the same Hounsfield units before anything is timed
    reference = hu.array.compute(**threads)
    assert reference.min() < -1000
    np.testing.assert_array_equal(hu.compute().array, reference)
    np.testing.assert_array_equal(hu16.array.compute(**threads), reference.astype(np.int16))
    np.testing.assert_array_equal(compressed_hu.array.compute(**threads), reference)
    del reference
    rows = []
    t = interleaved(
        {
            "stored": lambda: volume.array.compute(**threads),
            "hu": lambda: hu.array.compute(**threads),
            "astype": lambda: volume.array.astype(np.float32).compute(**threads),
            "hu16": lambda: hu16.array.compute(**threads),
            "stored-direct": lambda: volume.compute(),
            "hu-direct": lambda: hu.compute(),
            "stored-mean": lambda: volume.array.mean().compute(**threads),
            "hu-mean": lambda: hu.array.mean().compute(**threads),
        },
        args.repeat,
    )
    name = "ct-300 (300 x 512², native)"
    rows.append((name, "full read: stored uint16", t["stored"], 1.0))
    rows.append(("", "full read: HU float32 (2x the bytes)", t["hu"], t["hu"] / t["stored"]))
    rows.append(
        ("", "full read: stored as float32, no chain", t["astype"], t["astype"] / t["stored"])
    )
    rows.append(("", "full read: HU int16 (dtype=np.int16)", t["hu16"], t["hu16"] / t["stored"]))
    rows.append(("", "Volume.compute(): stored uint16", t["stored-direct"], 1.0))
    rows.append(
        ("", "Volume.compute(): HU float32", t["hu-direct"], t["hu-direct"] / t["stored-direct"])
    )
    rows.append(("", "streamed mean: stored", t["stored-mean"], 1.0))
    rows.append(("", "streamed mean: HU float32", t["hu-mean"], t["hu-mean"] / t["stored-mean"]))
    chain = t["hu"] / t["astype"]
    t = interleaved(
        {
            "stored": lambda: compressed.array.compute(**threads),
            "hu": lambda: compressed_hu.array.compute(**threads),
            "stored-mean": lambda: compressed.array.mean().compute(**threads),
            "hu-mean": lambda: compressed_hu.array.mean().compute(**threads),
        },
        max(3, args.repeat // 2),
    )
    name = "ct-300-jpegls (JPEG-LS)"
    rows.append((name, "full read: stored uint16", t["stored"], 1.0))
    rows.append(("", "full read: HU float32", t["hu"], t["hu"] / t["stored"]))
    rows.append(("", "streamed mean: stored", t["stored-mean"], 1.0))
    rows.append(("", "streamed mean: HU float32", t["hu-mean"], t["hu-mean"] / t["stored-mean"]))
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
    print(
        f"\nct-300 native: the chain costs {chain:.2f}x a float32 read of the stored values "
        "with no transform (HU float32 / stored as float32)"
    )


if __name__ == "__main__":
    main()
