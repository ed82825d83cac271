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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dicom_dask.frames._io import StorageOptions

__all__ = ["WriteOptions", "active_client", "compute", "progress_bar"]


@dataclass(frozen=True, kw_only=True)
class WriteOptions:
    """The options every writer takes, with the same meaning everywhere.

    Parameters
    ----------
    storage_options : mapping or callable, optional
        fsspec options of the destination (as for reading: a callable returning the
        filesystem keeps credentials out of pickled task graphs).
    overwrite : bool
        Replace what is already at the destination.
    progress : bool
        Show a progress bar (dask's, or the distributed dashboard's progress).
    """

    storage_options: StorageOptions = None
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def coerce(cls, options: WriteOptions | Mapping[str, Any] | None, **given: Any) -> WriteOptions:
        """``options`` as a `WriteOptions`, with the keywords a writer was given on top."""
        if options is None:
            base: dict[str, Any] = {}
        elif isinstance(options, WriteOptions):
            base = {k: getattr(options, k) for k in cls.__dataclass_fields__}
        else:
            base = dict(options)
        base.update({k: v for k, v in given.items() if v is not None})
        return cls(**base)


def active_client() -> Any | None:
    """The active `distributed.Client`, or ``None`` (distributed not installed or none active)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
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
