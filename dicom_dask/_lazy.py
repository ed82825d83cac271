"""Dask helpers shared by the front ends (imported only where dask is wanted)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dicom_dask.transforms import FrameTransformer, apply_block

__all__ = ["transformed_dask"]


def transformed_dask(array: Any, transformer: FrameTransformer, roles: str) -> Any:
    """``array`` with each block mapped through :func:`~dicom_dask.transforms.apply_block`.

    The transformer (header datasets and switches) is one node of the graph, shared
    by every task; the output dtype and shape are declared, nothing is computed.
    """
    import dask
    import dask.array as da

    dtype = np.dtype(transformer.options.dtype)
    extra: dict[str, Any] = {}
    if transformer.adds_samples:  # palette colour: a new RGB axis
        extra = {"new_axis": array.ndim, "chunks": (*array.chunks, (3,))}
    ndim = array.ndim + (1 if transformer.adds_samples else 0)
    return da.map_blocks(
        apply_block,
        array,
        dask.delayed(transformer, pure=True),
        roles,
        dtype=dtype,
        meta=np.empty((0,) * ndim, dtype=dtype),
        **extra,
    )
