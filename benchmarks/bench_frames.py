"""Read all frames of one file through dicom_dask, pydicom and highdicom, beside the ceiling.

Run ``python benchmarks/make_data.py`` first. Every workload runs in this one
process on the same file; the table prints seconds and the ratio to the ceiling,
i.e. all frames decoded from memory (bytes read beforehand, untimed) with the
fastest decoder in 2 threads. Timings are best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _timing import best  # benchmarks/_timing.py

import dicom_dask
from dicom_dask.chunks.decoders import unwrap_items

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")


def frame_bytes(path: Path) -> list[bytes]:
    frames = dicom_dask.open_frames(path)
    data = path.read_bytes()
    offsets = frames.manifest.offsets.ravel()
    lengths = frames.manifest.lengths.ravel()
    return [
        bytes(unwrap_items(data[int(o) : int(o) + int(n)]))
        for o, n in zip(offsets, lengths, strict=True)
    ]


def ceiling_jpeg(blobs: list[bytes], shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    import imagecodecs

    def run() -> np.ndarray:
        out = np.empty(shape, dtype=np.uint8)

        def one(i: int) -> None:
            out[i] = imagecodecs.jpeg8_decode(blobs[i], colorspace="YCbCr", outcolorspace="RGB")

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(one, range(len(blobs))))
        return out

    return run


def ceiling_native(blobs: list[bytes], shape: tuple[int, ...], dtype: np.dtype) -> Callable:
    def run() -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        for i, blob in enumerate(blobs):
            out[i] = np.frombuffer(blob, dtype=dtype).reshape(shape[1:])
        return out

    return run


def workloads(path: Path, repeat: int) -> list[tuple[str, float]]:
    import highdicom as hd
    import pydicom

    opened = dicom_dask.open_frames(path)
    shape, dtype = opened.shape, opened.dtype
    blobs = frame_bytes(path)
    is_jpeg = opened.index.header.transfer_syntax == "1.2.840.10008.1.2.4.50"
    ceiling = ceiling_jpeg(blobs, shape) if is_jpeg else ceiling_native(blobs, shape, dtype)
    rows = [("ceiling: decode from memory, 2 threads", best(ceiling, repeat))]

    def dd(per_chunk: int) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            f = dicom_dask.open_frames(path)
            arr = f.to_dask(frames_per_chunk=per_chunk)
            return arr.compute(scheduler="threads", num_workers=2)

        return run

    def dd_store(per_chunk: int) -> Callable[[], np.ndarray]:
        import dask.array as da

        def run() -> np.ndarray:
            f = dicom_dask.open_frames(path)
            out = np.empty(f.shape, dtype=f.dtype)
            arr = f.to_dask(frames_per_chunk=per_chunk)
            da.store(arr, out, lock=False, scheduler="threads", num_workers=2)
            return out

        return run

    rows.append(("dicom_dask open + .array (1 frame/task)", best(dd(1), repeat)))
    rows.append(("dicom_dask open + da.store(64 frames/task)", best(dd_store(64), repeat)))
    rows.append(("dicom_dask open + to_dask(64 frames/task)", best(dd(64), repeat)))
    rows.append(
        (
            "dicom_dask open + .zarr[...] (zarr pipeline)",
            best(lambda: dicom_dask.open_frames(path).zarr[...], repeat),
        )
    )
    rows.append(
        ("pydicom dcmread + pixel_array", best(lambda: pydicom.dcmread(path).pixel_array, 1))
    )
    rows.append(
        (
            "highdicom imread(lazy) + get_stored_frames",
            best(lambda: hd.imread(path, lazy_frame_retrieval=True).get_stored_frames(), 1),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = Path(args.data)
    files = ["tiles-jpeg-4096.dcm", "tiles-jpeg-4096-nobot.dcm", "native-u16-1024.dcm"]
    for name in files:
        path = data / name
        if not path.exists():
            raise SystemExit(f"{path} is missing: run python benchmarks/make_data.py")
        t0 = time.perf_counter()
        opened = dicom_dask.open_frames(path)
        t_open = time.perf_counter() - t0
        print(
            f"\n### {name}: {opened.shape} {opened.dtype}, frame index: "
            f"{opened.index.ranges.method}, open {1e3 * t_open:.1f} ms, "
            f"decoder: {opened.codecs[-1].get('configuration', {}).get('backend', 'bytes')}"
        )
        rows = workloads(path, args.repeat)
        ceiling = rows[0][1]
        print(f"| {'workload':45s} | {'seconds':>8s} | {'x ceiling':>9s} |")
        print(f"|{'-' * 47}|{'-' * 10}|{'-' * 11}|")
        for label, seconds in rows:
            print(f"| {label:45s} | {seconds:8.3f} | {seconds / ceiling:9.2f} |")


if __name__ == "__main__":
    main()
