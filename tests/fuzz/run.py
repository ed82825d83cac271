"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

Usage::

    python -m tests.fuzz.run TARGET [CORPUS_DIR] [libFuzzer options...]

``TARGET`` is one of [`TARGETS`][tests.fuzz.harnesses.TARGETS]. The seed corpus (from
the real files) is added to ``CORPUS_DIR`` (default:
``tests/fuzz/corpus/TARGET``, git-ignored), and the fuzzer adds what it finds there.
dicom_dask and pydicom are instrumented for coverage. Defaults: ``-timeout=10``
(seconds per input: a hang is a finding), ``-rss_limit_mb=2048``, ``-max_len``
= [`MAX_LEN`][tests.fuzz.harnesses.MAX_LEN]; the process's address space is limited to
its size at start + 1 GiB, so that a large allocation raises ``MemoryError`` (a
finding, as any exception other than a ``DicomDaskError``).

Short run (what the CI test does)::

    python -m tests.fuzz.run header -max_total_time=8

Long run (each target an hour, at low priority)::

    nice -n 19 python -m tests.fuzz.run header -max_total_time=3600 -print_final_stats=1
"""

from __future__ import annotations

import hashlib
import os
import resource
import sys
import warnings
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
#: Extra address space a target may use beyond its size at start.
ALLOCATION_LIMIT = 1 << 30


def _limit_memory() -> None:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    now = pages * os.sysconf("SC_PAGE_SIZE")
    limit = now + ALLOCATION_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    target = argv[1]
    rest = argv[2:]
    corpus = HERE / "corpus" / target
    if rest and not rest[0].startswith("-"):
        corpus = Path(rest.pop(0))
    warnings.simplefilter("ignore")  # pydicom and our OffsetTableWarning: not findings

    with atheris.instrument_imports(include=["dicom_dask", "pydicom", "dicomweb_client"]):
        import dicomweb_client.api  # noqa: F401
        import pydicom  # noqa: F401

        import dicom_dask.api
        import dicom_dask.chunks.sidecar
        import dicom_dask.frames.dicomweb
        import dicom_dask.frames.encapsulated
        import dicom_dask.frames.functional_groups
        import dicom_dask.frames.header  # noqa: F401

    from tests.fuzz.harnesses import MAX_LEN, TARGETS, seeds

    if target not in TARGETS:
        raise SystemExit(f"unknown target {target!r}; expected one of {sorted(TARGETS)}")
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds(target):  # named by content: a corpus is topped up, never doubled
        path = corpus / hashlib.sha1(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
    TARGETS[target](b"")  # builds the harness's cached state before the limits apply
    for seed in seeds(target)[:1]:
        TARGETS[target](seed)
    _limit_memory()
    options = [f"-max_len={MAX_LEN}", "-timeout=10", "-rss_limit_mb=2048"]
    given = {o.split("=")[0] for o in rest}
    args = [argv[0], *[o for o in options if o.split("=")[0] not in given], *rest, str(corpus)]
    atheris.Setup(args, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
