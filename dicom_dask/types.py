"""Public types shared by every stage: what a user passes in and what index formats hold.

Import them from here in annotations: ``from dicom_dask.types import StorageOptions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import fsspec

__all__ = ["StorageOptions"]

#: fsspec options for every URL (``{"anon": True}``, ``{"key": ..., "secret": ...}``), or
#: a picklable zero-argument factory returning a ready filesystem (called where the read
#: happens, so credentials it looks up never travel in a pickled graph), or ``None`` for
#: fsspec's defaults.
StorageOptions: TypeAlias = Mapping[str, Any] | Callable[[], fsspec.AbstractFileSystem] | None
