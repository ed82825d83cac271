"""A 300-file CT series through dicom_dask, highdicom, SimpleITK and pydicom, beside the ceiling.

Run ``python benchmarks/make_data.py`` first (writes ``benchmarks/data/ct-300``:
300 single-frame files of 512 x 512, 12 of 16 bits stored, shuffled names). In one process:

* **open**: from a folder to an object that knows the volume's shape and geometry.
  dicom_dask reads headers only; highdicom (``get_volume_from_series`` over pydicom
  datasets), SimpleITK (``ImageSeriesReader``) and the pydicom loop read everything;
* **open + full read**: the whole volume as a NumPy array, through dask
  (``.array.compute()``) and through ``Volume.compute()``, which reads an opened volume
  straight from its manifest into one array (no dask chunks to assemble);
* **ceiling**: headers parsed with pydicom (``stop_before_pixels``) to sort the
  slices, then the same pixel bytes read and ``frombuffer``-ed into the volume, and
  the 4 unused high bits cleared in place (as pydicom's ``pixel_array`` does).

dicom_dask computes with dask's threaded scheduler (2 workers). The ceiling and
dicom_dask runs are interleaved, best of ``--repeat`` each: this VM's timings of
memory-heavy work vary by 2x from run to run (page faults of fresh memory), and
interleaving keeps drift from favouring either side.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
from _timing import best, interleaved  # benchmarks/_timing.py

import dicom_dask

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")


def ceiling(files: list[str]) -> np.ndarray:
    import pydicom

    headers = []
    for f in files:
        with open(f, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            headers.append((f, ds, fh.tell()))
    normal = np.cross(*np.reshape(np.asarray(headers[0][1].ImageOrientationPatient, float), (2, 3)))
    order = sorted(
        headers, key=lambda h: -np.dot(np.asarray(h[1].ImagePositionPatient, float), normal)
    )
    first = order[0][1]
    rows, cols = int(first.Rows), int(first.Columns)
    dtype = np.dtype(f"<{'i' if first.PixelRepresentation else 'u'}{first.BitsAllocated // 8}")
    out = np.empty((len(files), rows, cols), dtype=dtype.newbyteorder("="))
    nbytes = rows * cols * dtype.itemsize
    for k, (f, _, tell) in enumerate(order):
        fd = os.open(f, os.O_RDONLY)
        try:
            # the pixel data element header is 12 bytes (explicit VR OW, undefined no)
            out[k] = np.frombuffer(os.pread(fd, nbytes, tell + 12), dtype=dtype).reshape(rows, cols)
        finally:
            os.close(fd)
    shift = int(first.BitsAllocated) - int(first.BitsStored)
    if shift:  # the unused high bits cleared (or sign-extended), as pydicom does
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)
    return out


def rows(folder: Path, repeat: int) -> list[tuple[str, str, float, float | None]]:
    import highdicom as hd
    import pydicom
    import SimpleITK as sitk

    files = sorted(str(p) for p in folder.iterdir())
    out: list[tuple[str, str, float, float | None]] = []

    def dd_open() -> object:
        return dicom_dask.open_volume(folder)

    def dd_full() -> np.ndarray:
        return dicom_dask.open_volume(folder).array.compute(scheduler="threads", num_workers=2)

    def dd_graph() -> np.ndarray:  # dask's own compute: tasks, then the blocks assembled
        import dask.array as da

        array = dicom_dask.open_volume(folder).array
        return da.Array.compute(array, scheduler="threads", num_workers=2)  # type: ignore[no-any-return]

    def dd_direct() -> np.ndarray:
        return dicom_dask.open_volume(folder).compute().array  # type: ignore[no-any-return]

    def pydicom_loop() -> np.ndarray:
        datasets = [pydicom.dcmread(f) for f in files]
        normal = np.cross(
            *np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3))
        )
        datasets.sort(key=lambda d: -np.dot(np.asarray(d.ImagePositionPatient, float), normal))
        return np.stack([d.pixel_array for d in datasets])

    def highdicom_volume() -> np.ndarray:
        datasets = [pydicom.dcmread(f) for f in files]
        return hd.get_volume_from_series(
            datasets,
            dtype=np.uint16,
            apply_modality_transform=False,
            apply_voi_transform=False,
            apply_presentation_lut=False,
            apply_palette_color_lut=False,
            apply_icc_profile=False,
        ).array

    def sitk_volume() -> np.ndarray:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return sitk.GetArrayFromImage(reader.Execute())

    fast = interleaved(
        {
            "ceiling": lambda: ceiling(files),
            "open": dd_open,
            "full": dd_full,
            "graph": dd_graph,
            "direct": dd_direct,
        },
        repeat,
    )
    t_ceiling, t_open, t_full = fast["ceiling"], fast["open"], fast["full"]
    t_direct = fast["direct"]
    slow = max(3, repeat // 3)
    anchors = [
        ("highdicom dcmread + get_volume_from_series", best(highdicom_volume, slow)),
        ("SimpleITK ImageSeriesReader", best(sitk_volume, slow)),
        ("pydicom dcmread loop + sort + stack", best(pydicom_loop, slow)),
    ]
    out.append(("open", "dicom_dask open_volume (headers only)", t_open, None))
    for label, seconds in anchors:
        out.append(("open", f"{label} (reads everything)", seconds, None))
    out.append(
        ("open + full read", "ceiling (headers sorted + pread + frombuffer)", t_ceiling, 1.0)
    )
    out.append(
        (
            "open + full read",
            "dicom_dask open_volume + .array.compute()",
            t_full,
            t_full / t_ceiling,
        )
    )
    out.append(
        (
            "open + full read",
            "  the same through dask's graph (threads, 2)",
            fast["graph"],
            fast["graph"] / t_ceiling,
        )
    )
    out.append(
        (
            "open + full read",
            "dicom_dask open_volume + .compute() (manifest read, no dask)",
            t_direct,
            t_direct / t_ceiling,
        )
    )
    for label, seconds in anchors:
        out.append(("open + full read", label, seconds, seconds / t_ceiling))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE / "data"))
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    folder = Path(args.data) / "ct-300"
    if not folder.exists():
        raise SystemExit(f"{folder} is missing: run python benchmarks/make_data.py")
    volume = dicom_dask.open_volume(folder)
    np.testing.assert_array_equal(
        volume.array.compute(), ceiling(sorted(map(str, folder.iterdir())))
    )
    print(f"\n### ct-300: {volume}")
    print(f"| {'workload':17s} | {'reader':52s} | {'seconds':>8s} | {'x ceiling':>9s} |")
    print(f"|{'-' * 19}|{'-' * 54}|{'-' * 10}|{'-' * 11}|")
    for workload, label, seconds, ratio in rows(folder, args.repeat):
        r = "" if ratio is None else f"{ratio:9.2f}"
        print(f"| {workload:17s} | {label:52s} | {seconds:8.3f} | {r:>9s} |")


if __name__ == "__main__":
    main()
