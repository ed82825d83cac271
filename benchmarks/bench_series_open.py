"""Opening a 300-file CT series over S3 and HTTP with 50 ms per request (issue 31).

Run ``python benchmarks/make_data.py`` first (``ct-300/``: 300 files of 512 x 512). The
series is served by moto (S3) and nginx (HTTP), each behind
``dicom_dask.testing.loopback.Proxy(latency=...)``, which counts requests. For each way of
naming the series (its folder, whose listing gives every size; the list of its files,
where each header's ranged GET tells the size) this prints the open's requests, round
trips (waves of overlapping requests) and time against the floor: files / concurrency x
latency (``io.concurrency`` requests in flight, one request per file), then the requests
of reading every pixel.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _timing import timed  # benchmarks/_timing.py

import dicom_dask
import dicom_dask.config
from dicom_dask.testing import loopback

HERE = Path(__file__).resolve().parent
warnings.simplefilter("ignore")
CREDENTIALS = {"key": "bench", "secret": "bench"}


def measure(
    proxy: loopback.Proxy, name: str, source: Any, options: dict[str, Any], args: Any
) -> None:
    files = len(source) if isinstance(source, list) else args.files
    floor = -(-files // dicom_dask.config.io_concurrency()) * args.latency
    proxy.reset()
    seconds, volume = timed(lambda: dicom_dask.open_volume(source, storage_options=options))
    log = proxy.reset()
    trips = loopback.round_trips(log)
    heads = sum(r.method == "HEAD" for r in log)
    volume.array.compute()
    read = len(proxy.reset())
    print(
        f"| {name} | {files} | {len(log)} ({heads} HEAD) | {trips} | {seconds:.2f} "
        f"| {floor:.2f} | {seconds / floor:.1f} | {read} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--folder", default="ct-300")
    args = parser.parse_args()
    data = HERE / "data"
    folder = data / args.folder
    if not folder.is_dir():
        raise SystemExit("run python benchmarks/make_data.py first")
    names = sorted(p.name for p in folder.glob("*.dcm"))
    args.files = len(names)
    import s3fs

    with (
        loopback.nginx(data) as web,
        loopback.moto_server() as moto,
        loopback.Proxy(web.endpoint, latency=args.latency) as http,
        loopback.Proxy(moto.endpoint, latency=args.latency) as s3,
    ):
        fs = s3fs.S3FileSystem(endpoint_url=moto.endpoint, skip_instance_cache=True, **CREDENTIALS)
        fs.mkdir("bench")
        fs.put(str(folder) + "/", f"bench/{args.folder}/", recursive=True)
        options = {"endpoint_url": s3.endpoint, "skip_instance_cache": True, **CREDENTIALS}
        print(
            f"cores: {os.cpu_count()}; latency {args.latency * 1000:.0f} ms per request; "
            f"io.concurrency {dicom_dask.config.io_concurrency()}\n"
        )
        print(
            "| open_volume | files | requests | round trips | seconds | floor (s) "
            "| / floor | full read requests |"
        )
        print("|---|---|---|---|---|---|---|---|")
        measure(s3, "S3 folder", f"s3://bench/{args.folder}/", options, args)
        s3_files = [f"s3://bench/{args.folder}/{n}" for n in names]
        measure(s3, "S3 list of files", s3_files, options, args)
        measure(http, "HTTP folder (autoindex)", f"{http.endpoint}/{args.folder}/", {}, args)
        http_files = [f"{http.endpoint}/{args.folder}/{n}" for n in names]
        measure(http, "HTTP list of files", http_files, {}, args)
        local = dicom_dask.open_volume(folder).array[::50].compute()
        remote = dicom_dask.open_volume(s3_files, storage_options=options).array[::50].compute()
        print("\npixels identical to the local open:", bool(np.array_equal(local, remote)))


if __name__ == "__main__":
    main()
