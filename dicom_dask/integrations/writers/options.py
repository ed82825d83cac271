"""What every writer shares: its trailing options and the scheduler it runs on.

One [`WriteOptions`][dicom_dask.integrations.writers.options.WriteOptions] carries the
options that `to_ome_zarr`, `to_dicom_slide`, `to_dicom_seg`, `to_dicom_pmap`,
`to_dicom_series` and `convert` have in common, and one rule says where their tasks
run: [`compute`][dicom_dask.integrations.writers.options.compute] lets the active
scheduler run them (a `distributed.Client`'s workers when one is active, dask's
threads otherwise); no writer forces a scheduler.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import sys
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dicom_dask.errors import DestinationExistsError, WrongInputError
from dicom_dask.frames.storage import redact, resolve_fs
from dicom_dask.integrations.writers.stream import EOT_THRESHOLD
from dicom_dask.types import StorageOptions

__all__ = [
    "WriteOptions",
    "active_client",
    "as_completed",
    "check_destination",
    "compute",
    "progress_bar",
    "remove_files",
]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, kw_only=True)
class WriteOptions:
    """The options every writer takes, with the same meaning everywhere.

    Each writer also takes these as keywords of the same name (``overwrite=True``...),
    which take precedence over an ``options=`` given with them; every writer parses
    both once, with [`coerce`][dicom_dask.integrations.writers.options.WriteOptions.coerce],
    and passes the one `WriteOptions` on. A field a writer does not use is ignored by
    it (``quality`` by a Segmentation, ``offset_table`` by an OME-Zarr group...).

    Parameters
    ----------
    storage_options : mapping or callable, optional
        fsspec options of the destination (as for reading: a callable returning the
        filesystem keeps credentials out of pickled task graphs).
    overwrite : bool
        Replace what is already at the destination.
    progress : bool
        Show a progress bar (dask's, or the distributed dashboard's progress).
    keep_identifiers : bool
        Copy the source's identifying header into a derived output that is not DICOM
        ([`to_ome_zarr`][dicom_dask.integrations.ome_zarr.to_ome_zarr]). DICOM written
        by the writers always keeps the source's patient and study modules: its
        references to the source need them.
    transfer_syntax : str, optional
        Transfer syntax of DICOM frames, a name (``"jpeg"``, ``"jpeg2000-lossless"``,
        ``"rle"``, ``"explicit"``...) or a UID; ``None``: the writer's default.
    quality : int, optional
        JPEG quality, or JPEG 2000 PSNR (dB), of the lossy syntaxes; ``None``: the
        writer's default (90).
    offset_table : {"auto", "bot", "eot", "empty"}
        The offset table of an encapsulated DICOM instance: Basic, Extended (when the
        pixel data may pass ``eot_threshold`` bytes, with ``"auto"``) or empty.
    eot_threshold : int
        Pixel data size in bytes from which ``"auto"`` writes an Extended Offset Table
        (4 GiB).
    chunk_edge : int, optional
        Edge in pixels of the block one encoding task holds; ``None``: the writer's
        default.
    """

    storage_options: StorageOptions = None
    overwrite: bool = False
    progress: bool = True
    keep_identifiers: bool = False
    transfer_syntax: str | None = None
    quality: int | None = None
    offset_table: str = "auto"
    eot_threshold: int = EOT_THRESHOLD
    chunk_edge: int | None = None

    @classmethod
    def coerce(
        cls,
        options: WriteOptions | Mapping[str, Any] | None,
        *,
        defaults: Mapping[str, Any] | None = None,
        **given: Any,
    ) -> WriteOptions:
        """``options`` as a `WriteOptions`, with the keywords a writer was given on top.

        The one place a writer's trailing options are parsed.

        Parameters
        ----------
        options : WriteOptions, mapping or None
            What the caller passed as ``options=``.
        defaults : mapping, optional
            The writer's own defaults of the fields that are ``None`` once ``options``
            and ``given`` are applied (``transfer_syntax``, ``quality``,
            ``chunk_edge``).
        **given
            The writer's keywords of the same names; ``None`` means not given (a
            writer passes ``overwrite or None``, so that ``False`` leaves
            ``options.overwrite`` as it is).

        Returns
        -------
        WriteOptions
            Keywords given, then ``options``, then ``defaults``, then the field defaults.

        Raises
        ------
        WrongInputError
            When ``options`` is not a `WriteOptions` or a mapping, or names an unknown
            option.
        """
        if options is None:
            base: dict[str, Any] = {}
        elif isinstance(options, WriteOptions):
            base = {k: getattr(options, k) for k in cls.__dataclass_fields__}
        elif isinstance(options, Mapping):
            base = dict(options)
        else:
            raise WrongInputError(
                f"options is a {type(options).__name__}: expected a WriteOptions or a mapping"
            )
        unknown = sorted(set(base) - set(cls.__dataclass_fields__))
        if unknown:
            raise WrongInputError(
                f"unknown write option(s) {', '.join(map(repr, unknown))}: expected some of "
                f"{', '.join(cls.__dataclass_fields__)}"
            )
        base.update({k: v for k, v in given.items() if v is not None})
        for key, value in (defaults or {}).items():
            if base.get(key) is None:
                base[key] = value
        return cls(**base)


def _split(url: str) -> tuple[str, str]:
    """``(folder, name)`` of a file's path or URL."""
    if "://" not in url:
        return os.path.split(url)
    if url.startswith("file://"):
        return os.path.split(url[len("file://") :])
    folder, _, name = url.rstrip("/").rpartition("/")
    return folder, name


def _listing(folder: str, storage_options: StorageOptions) -> set[str]:
    """The names of the files in ``folder`` (empty if it does not exist)."""
    if "://" not in folder:
        return set(os.listdir(folder)) if os.path.isdir(folder) else set()
    fs, path = resolve_fs(folder, storage_options)
    fs.invalidate_cache(path)  # what another process wrote since
    try:
        found = fs.ls(path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {str(f).rstrip("/").rpartition("/")[2] for f in found}


def _exists(url: str, storage_options: StorageOptions) -> bool:
    if "://" not in url:
        return os.path.lexists(url)
    fs, path = resolve_fs(url, storage_options)
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def check_destination(
    paths: Sequence[str],
    *,
    storage_options: StorageOptions = None,
    overwrite: bool = False,
    family: str | None = None,
) -> list[str]:
    """Refuse to replace files that exist unless ``overwrite``; called by a writer before
    any work starts.

    Parameters
    ----------
    paths : sequence of str
        The files the writer will write (local paths or fsspec URLs).
    storage_options : mapping or callable, optional
        fsspec options of the destination.
    overwrite : bool
        Allow replacing them.
    family : str, optional
        A regular expression of the file names a previous write of the same kind left in
        the same folder (``level-\\d+\\.dcm``, say): such files that this write will not
        replace count as existing too (they would mix with the new ones), and are
        returned, so that the writer removes them once it has succeeded.

    Returns
    -------
    list of str
        The files of ``family`` this write leaves over (empty without ``overwrite``).

    Raises
    ------
    DestinationExistsError
        When a file exists and ``overwrite`` is false.
    """
    folders: dict[str, dict[str, str]] = {}
    for path in paths:
        folder, name = _split(os.fspath(path))
        folders.setdefault(folder, {})[name] = os.fspath(path)
    taken: list[str] = []
    leftover: list[str] = []
    pattern = re.compile(family) if family else None
    for folder, names in folders.items():
        if pattern is None and len(names) == 1:  # one file: no listing of its folder
            (url,) = names.values()
            taken += [url] if _exists(url, storage_options) else []
            continue
        present = _listing(folder, storage_options)
        taken += [url for name, url in names.items() if name in present]
        if pattern is not None:
            base = next(iter(names.values()))
            prefix = base[: len(base) - len(_split(base)[1])]
            others = sorted(n for n in present - set(names) if pattern.fullmatch(n))
            leftover += [prefix + n for n in others]
    if (taken or leftover) and not overwrite:
        first = (taken or leftover)[0]
        more = len(taken) + len(leftover) - 1
        also = f" (and {more} more file{'s' if more > 1 else ''})" if more else ""
        raise DestinationExistsError(
            f"{redact(first)} already exists{also}; pass overwrite=True to replace it"
        )
    return leftover


def remove_files(paths: Sequence[str], storage_options: StorageOptions = None) -> None:
    """Remove ``paths`` (files left over from a previous write, after an overwrite)."""
    for path in paths:
        if "://" not in path or path.startswith("file://"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path.removeprefix("file://"))
        else:
            fs, stripped = resolve_fs(path, storage_options)
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(stripped)


def active_client() -> Any | None:
    """The active `distributed.Client`, or ``None`` (distributed not installed or none active).

    No client can be active unless distributed was imported: it is not imported here
    (that costs about a second), so asking is free when it is not in use.
    """
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[None]:
    """dask's local progress bar when ``enabled`` and no client is active."""
    if not enabled or active_client() is not None:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar():
        yield


def compute(*collections: Any, progress: bool = False) -> tuple[Any, ...]:
    """``dask.compute`` on the active scheduler: a client's workers, or threads.

    The one scheduler rule of the writers: nothing here sets ``scheduler=``, so a
    `distributed.Client` made by the user runs the writing tasks on its workers.
    """
    import dask

    with progress_bar(progress):
        return dask.compute(*collections)


class _Stopped(Exception):
    """Raised inside dask's local scheduler when the consumer of the results stopped."""


def _nothing(_: Any) -> None:
    """A sink: its input is released once it has run (only ``None`` is kept to the end)."""


def as_completed(tasks: Mapping[K, Any]) -> Iterator[tuple[K, Any]]:
    """Compute ``tasks`` (name -> `dask.delayed` object) on the active scheduler,
    yielding ``(name, value)`` as each one finishes, in any order.

    The streaming form of [`compute`][dicom_dask.integrations.writers.options.compute],
    with the same scheduler rule: with a `distributed.Client` active, the tasks run on
    its workers and each value comes back to this process when it is ready (and is
    then released on the cluster); otherwise dask's local scheduler (threads, or
    whatever ``dask.config`` names) runs them in a background thread and a callback
    hands each value over as its task ends. Either way a value is held here only
    until the consumer has taken it, so a writer streams results of any total size.
    Graphs are computed as given (``optimize_graph=False``): the names stay the keys.
    Stopping the iteration cancels what is left.
    """
    if not tasks:
        return
    client = active_client()
    if client is not None:
        yield from _distributed(client, tasks)
        return
    import dask
    import dask.local
    import dask.multiprocessing
    import dask.threaded

    get = dask.base.get_scheduler(collections=list(tasks.values()))
    if get not in (dask.threaded.get, dask.local.get_sync, dask.multiprocessing.get):
        # a scheduler without dask's local callbacks: everything at once
        values = dask.compute(*tasks.values(), optimize_graph=False)
        yield from zip(tasks, values, strict=True)
        return
    yield from _local(tasks)


def _distributed(client: Any, tasks: Mapping[K, Any]) -> Iterator[tuple[K, Any]]:
    from distributed import as_completed as completed

    futures = client.compute(list(tasks.values()), optimize_graph=False)
    names = {f.key: name for f, name in zip(futures, tasks, strict=True)}
    pending = completed(futures, with_results=True)
    try:
        for future, value in pending:
            yield names[future.key], value
            future.release()
    finally:
        client.cancel([f for f in futures if not f.done()])


def _local(tasks: Mapping[K, Any]) -> Iterator[tuple[K, Any]]:
    import dask
    from dask.callbacks import Callback

    names = {t.key: name for name, t in tasks.items()}
    results: queue.Queue[tuple[bool, Any, Any]] = queue.Queue()
    stop = threading.Event()

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker: Any) -> None:
        if key not in names:  # the callback is global: other computations pass by
            return
        if stop.is_set():
            raise _Stopped
        results.put((True, names[key], result))

    def run() -> None:
        try:
            with Callback(posttask=posttask):
                dask.compute(
                    *(dask.delayed(_nothing)(t) for t in tasks.values()), optimize_graph=False
                )
            results.put((False, None, None))
        except BaseException as exc:  # handed to the consumer, raised there
            results.put((False, None, exc))

    thread = threading.Thread(target=run, name="dicom-dask-writer", daemon=True)
    thread.start()
    try:
        while True:
            value, name, result = results.get()
            if value:
                yield name, result
                continue
            if isinstance(result, _Stopped):
                return
            if result is not None:
                raise result
            return
    finally:
        stop.set()
        thread.join()
