"""Opening one source through each front end over S3, 50 ms per request: requests,
round trips and seconds against the requests of the header alone.

Run ``python benchmarks/make_data.py`` first (``slide-bot/level0.dcm``, a 16k x 16k slide
with a Basic Offset Table, and ``ct-300/``). Both are served by moto behind
``dicom_dask.testing.loopback.Proxy(latency=...)``, which counts requests. The floor of
a file is ``open_frames`` (its header's requests: the first block, then the last frame's
item); that of the series ``open_volume`` of its folder named with ``/`` (the listing,
then one GET per file). Every other way of opening the same source (``open_source``,
``xarray.open_dataset(engine="dicom")``, the OpenSlide facade, ``dicom-dask info``'s
document, a folder named without ``/``) is printed against it, and wsidicom over fsspec
opens the slide as the anchor. Best of ``--repeat`` runs; requests and round trips are
those of the last run.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr
from _timing import timed  # benchmarks/_timing.py

import dicom_dask
from dicom_dask.integrations.cli import _info_document
from dicom_dask.testing import loopback

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")
CREDENTIALS = {"key": "bench", "secret": "bench"}


def measure(proxy: loopback.Proxy, rows: list[tuple[str, Callable[[], Any]]], repeat: int) -> None:
    """Print one table: the first row is the floor."""
    print("| open | requests | HEAD | round trips | KiB | seconds | / floor |")
    print("|---|---|---|---|---|---|---|")
    floor = None
    for name, open_ in rows:
        seconds = float("inf")
        log: list[loopback.LoggedRequest] = []
        for _ in range(repeat):  # each run's own log: requests are per open
            proxy.reset()
            t, _ = timed(open_)
            log = proxy.reset()
            seconds = min(seconds, t)
        floor = floor or seconds
        heads = sum(r.method == "HEAD" for r in log)
        print(
            f"| {name} | {len(log)} | {heads} | {loopback.round_trips(log)} "
            f"| {sum(r.body_bytes for r in log) / 1024:.0f} | {seconds:.3f} "
            f"| {seconds / floor:.2f} |"
        )


def _wsidicom(url: str, options: dict[str, Any]) -> Callable[[], Any]:
    from wsidicom import WsiDicom

    def open_() -> Any:
        with WsiDicom.open(url, file_options=options) as wsi:
            return wsi.size

    return open_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = HERE / "data"
    if not (data / "slide-bot" / "level0.dcm").is_file() or not (data / "ct-300").is_dir():
        raise SystemExit("run python benchmarks/make_data.py first")
    import s3fs

    with (
        loopback.moto_server() as moto,
        loopback.Proxy(moto.endpoint, latency=args.latency) as s3,
    ):
        fs = s3fs.S3FileSystem(endpoint_url=moto.endpoint, skip_instance_cache=True, **CREDENTIALS)
        fs.mkdir("bench")
        fs.put(str(data / "slide-bot" / "level0.dcm"), "bench/slide-bot/level0.dcm")
        fs.put(str(data / "ct-300") + "/", "bench/ct-300/", recursive=True)
        # one s3fs instance (fsspec's cache) for every open, as in a session: no row pays
        # for building a client
        options = {"endpoint_url": s3.endpoint, **CREDENTIALS}
        print(
            f"cores: {os.cpu_count()}; latency {args.latency * 1000:.0f} ms per request; "
            f"best of {args.repeat}\n"
        )
        slide = "s3://bench/slide-bot/level0.dcm"
        print("### One slide file (16k x 16k, 4,096 tiles, Basic Offset Table)\n")
        measure(
            s3,
            [
                (
                    "open_frames (the header: floor)",
                    lambda: dicom_dask.open_frames(slide, storage_options=options),
                ),
                ("open_slide", lambda: dicom_dask.open_slide(slide, storage_options=options)),
                ("open_source", lambda: dicom_dask.open_source(slide, storage_options=options)),
                (
                    'xarray.open_dataset(engine="dicom")',
                    lambda: xr.open_dataset(
                        slide, engine="dicom", backend_kwargs={"storage_options": options}
                    ),
                ),
                ("OpenSlide facade", lambda: dicom_dask.OpenSlide(slide, storage_options=options)),
                ("dicom-dask info (document)", lambda: _info_document(slide, options)),
                (
                    "wsidicom WsiDicom.open (folder)",
                    _wsidicom(
                        "s3://bench/slide-bot/",
                        {k: v for k, v in options.items() if k != "skip_instance_cache"},
                    ),
                ),
            ],
            args.repeat,
        )
        folder = "s3://bench/ct-300"
        print("\n### The 300-file CT series\n")
        measure(
            s3,
            [
                (
                    "open_volume of the folder/ (floor)",
                    lambda: dicom_dask.open_volume(folder + "/", storage_options=options),
                ),
                (
                    "open_volume of the folder (no /)",
                    lambda: dicom_dask.open_volume(folder, storage_options=options),
                ),
                (
                    "open_source of the folder/",
                    lambda: dicom_dask.open_source(folder + "/", storage_options=options),
                ),
                (
                    "open_source of the folder (no /)",
                    lambda: dicom_dask.open_source(folder, storage_options=options),
                ),
                (
                    'xarray.open_dataset(engine="dicom"), folder/',
                    lambda: xr.open_dataset(
                        folder + "/", engine="dicom", backend_kwargs={"storage_options": options}
                    ),
                ),
                (
                    "dicom-dask info (document), folder/",
                    lambda: _info_document(folder + "/", options),
                ),
            ],
            args.repeat,
        )


if __name__ == "__main__":
    main()
