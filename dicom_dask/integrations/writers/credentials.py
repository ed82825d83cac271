"""Storage options that reach a cluster's workers without travelling in task graphs.

A writer's tasks open the destination themselves, on whichever worker runs them. A
mapping of fsspec options (an S3 key and secret, say) pickled into every task would
sit in clear in the graph, the scheduler's memory and any spilled task. Instead,
[`shipped_storage_options`][dicom_dask.integrations.writers.credentials.shipped_storage_options]
keeps the mapping in a per-process registry under a random token: in this process,
and, when a `distributed.Client` is active, on every worker through a worker plugin
sent once over the cluster's comms (and removed when the write ends). The graph carries
a [`RegisteredFilesystem`][dicom_dask.integrations.writers.credentials.RegisteredFilesystem],
a filesystem factory (see [`resolve_fs`][dicom_dask.frames.storage.resolve_fs]) that
pickles as the token and the credential-free URL only.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec

from dicom_dask.errors import DicomDaskError
from dicom_dask.frames.storage import redact
from dicom_dask.types import StorageOptions

__all__ = ["RegisteredFilesystem", "shipped_storage_options"]

_REGISTRY: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RegisteredFilesystem:
    """A picklable filesystem factory for ``url`` whose options stay in the registry.

    Calling it in a process that was given the options (this one, or a worker of the
    active client while the write runs) returns ``fsspec.url_to_fs(url, **options)``'s
    filesystem; elsewhere it raises a [`DicomDaskError`][dicom_dask.errors.DicomDaskError].
    """

    url: str
    token: str

    def __call__(self) -> fsspec.AbstractFileSystem:
        with _LOCK:
            options = _REGISTRY.get(self.token)
        if options is None:
            raise DicomDaskError(
                f"{redact(self.url)}: this process was not given the storage options of the "
                "write (only this process and the workers of the active distributed.Client "
                "are); pass a filesystem factory as storage_options for other schedulers"
            )
        fs, _ = fsspec.core.url_to_fs(self.url, **options)
        return fs

    def __repr__(self) -> str:
        return f"RegisteredFilesystem({redact(self.url)!r})"


class _ShipOptions:
    """The worker plugin that registers (and on teardown forgets) one set of options."""

    idempotent = True

    def __init__(self, token: str, options: Mapping[str, Any]) -> None:
        self.token = token
        self.options = dict(options)

    def setup(self, worker: Any = None) -> None:
        with _LOCK:
            _REGISTRY[self.token] = self.options

    def teardown(self, worker: Any = None) -> None:
        with _LOCK:
            _REGISTRY.pop(self.token, None)

    def transition(self, *args: Any, **kwargs: Any) -> None:
        return None


def _worker_plugin(token: str, options: Mapping[str, Any]) -> Any:
    from distributed.diagnostics.plugin import WorkerPlugin

    class ShipOptions(_ShipOptions, WorkerPlugin):
        pass

    return ShipOptions(token, options)


@contextlib.contextmanager
def shipped_storage_options(
    url: str, storage_options: StorageOptions, *, client: Any = None
) -> Iterator[StorageOptions]:
    """``storage_options`` as something safe to put in a task graph, for the duration of a write.

    Parameters
    ----------
    url : str
        The destination (credential-free).
    storage_options : mapping or callable, optional
        A filesystem factory or ``None`` is yielded unchanged (a factory is the user's own
        way of keeping credentials out of pickles). A mapping is registered under a
        random token in this process and, with ``client``, on its workers; a
        [`RegisteredFilesystem`][dicom_dask.integrations.writers.credentials.RegisteredFilesystem]
        is yielded.
    client : distributed.Client, optional
        The active client whose workers will run the tasks.
    """
    if storage_options is None or callable(storage_options) or not storage_options:
        yield storage_options
        return
    token = secrets.token_hex(16)
    options = dict(storage_options)
    with _LOCK:
        _REGISTRY[token] = options
    name = f"dicom_dask-storage-options-{token}"
    try:
        if client is not None:
            client.register_plugin(_worker_plugin(token, options), name=name)
        yield RegisteredFilesystem(url, token)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(name)
        with _LOCK:
            _REGISTRY.pop(token, None)
