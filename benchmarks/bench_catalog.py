"""Catalog a bucket over S3 with 50 ms of latency per request, against the request floor.

A synthetic CT series of ``N`` small single-frame files (8 x 8 pixels: the headers are
what is read) is written for each ``--files`` count and put in moto (S3), behind a proxy
that waits ``--latency`` seconds before forwarding every request and counts them.
``dicom_dask.catalog`` lists the prefix and reads every header, with threads
(``io.concurrency`` requests in flight) and on a LocalCluster of two process workers (a
dask bag of batches of files, each read in threads on its worker).

The **floor** is what the requests alone cost: ``files / concurrency x latency`` (with
two workers, twice the concurrency), plus one latency for the listing. The table gives
the wall time, requests, round trips (waves of overlapping requests) and the ratio to
the floor; times are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _timing import timed  # benchmarks/_timing.py

import dicom_dask
import dicom_dask.config
from dicom_dask.testing import loopback, series_positions, write_series

warnings.simplefilter("ignore")
CREDENTIALS = {"key": "bench", "secret": "bench"}


def make_series(folder: Path, files: int) -> Path:
    """A CT series of ``files`` single-frame 8 x 8 files in ``folder`` (headers ~0.9 KiB)."""
    volume = np.random.default_rng(0).integers(0, 4000, (files, 8, 8), dtype=np.uint16)
    write_series(folder, volume, positions=series_positions(files, slice_spacing=1.0))
    return folder


def _row(name: str, files: int, seconds: float, log: list[Any], floor: float) -> None:
    trips = loopback.round_trips(log)
    print(
        f"| {name} | {files} | {seconds:.2f} | {len(log)} | {trips} | {floor:.2f} | "
        f"{seconds / floor:.1f} |"
    )


def run(args: argparse.Namespace, s3: loopback.Proxy, files: int, client: Any) -> None:
    options = {"endpoint_url": s3.endpoint, **CREDENTIALS}
    concurrency = dicom_dask.config.io_concurrency()
    url = f"s3://bench/catalog-{files}/"

    def once() -> Any:
        s3.reset()
        return dicom_dask.catalog(url, storage_options=options, progress=False)

    workers = 1 if client is None else len(client.scheduler_info()["workers"])
    floor = (math.ceil(files / (concurrency * workers)) + 1) * args.latency
    seconds, df = timed(once, args.repeat)
    assert len(df) == 1 and int(df["files"].iloc[0]) == files
    name = "threads" if client is None else f"LocalCluster ({workers} processes)"
    _row(name, files, seconds, s3.reset(), floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--files", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    import s3fs

    with (
        tempfile.TemporaryDirectory() as tmp,
        loopback.moto_server() as moto,
        loopback.Proxy(moto.endpoint, latency=args.latency) as s3,
    ):
        fs = s3fs.S3FileSystem(endpoint_url=moto.endpoint, skip_instance_cache=True, **CREDENTIALS)
        fs.mkdir("bench")
        for n in args.files:
            folder = make_series(Path(tmp) / f"catalog-{n}", n)
            fs.put(f"{folder}/", f"bench/catalog-{n}/", recursive=True)
        print(
            f"cores: {os.cpu_count()}; latency {args.latency * 1000:.0f} ms per request; "
            f"io.concurrency {dicom_dask.config.io_concurrency()}"
        )
        print("| catalog | files | seconds | requests | round trips | floor (s) | x floor |")
        print("|---|---|---|---|---|---|---|")
        for n in args.files:
            run(args, s3, n, None)
        if args.no_cluster:
            return
        import distributed

        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            for n in args.files:
                run(args, s3, n, client)


if __name__ == "__main__":
    main()
