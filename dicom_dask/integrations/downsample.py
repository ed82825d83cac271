"""Halving a block for the levels of a pyramid: 2 x 2 mean, mode or nearest.

Used inside the dask tasks of [`to_ome_zarr`][dicom_dask.integrations.ome_zarr.to_ome_zarr]
on the block the task holds; NumPy only, each method a few passes over the block.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dicom_dask.errors import LayoutError

__all__ = ["METHODS", "downsample"]

METHODS = ("mean", "mode", "nearest")


def _even(block: np.ndarray) -> np.ndarray:
    """``block`` with its last row and column repeated where y or x is odd."""
    pad = [(0, 0)] * (block.ndim - 2) + [(0, block.shape[-2] % 2), (0, block.shape[-1] % 2)]
    return np.pad(block, pad, mode="edge") if any(p for _, p in pad[-2:]) else block


def _mean2(block: np.ndarray) -> np.ndarray:
    b = _even(block)
    if b.dtype.kind == "f":
        acc = b.dtype
    elif b.dtype.kind == "b":
        acc = np.dtype(np.uint8)
    else:
        acc = np.dtype(f"{'u' if b.dtype.kind == 'u' else 'i'}{min(8, b.dtype.itemsize * 2)}")
    total = b[..., 0::2, 0::2].astype(acc)
    total += b[..., 1::2, 0::2]
    total += b[..., 0::2, 1::2]
    total += b[..., 1::2, 1::2]
    if acc.kind == "f":
        total *= 0.25
        return total
    total += 2  # round half up
    total >>= 2  # floor division by 4, for signed values too
    return total.astype(b.dtype)


def _mode2(block: np.ndarray) -> np.ndarray:
    """The most frequent of each 2 x 2 window; ties go to the first in reading order."""
    b = _even(block)
    a, c = b[..., 0::2, 0::2], b[..., 0::2, 1::2]
    d, e = b[..., 1::2, 0::2], b[..., 1::2, 1::2]
    ac, ad, ae = a == c, a == d, a == e
    cd, ce, de = c == d, c == e, d == e
    out = a.copy()
    best = 1 + ac.astype(np.uint8) + ad + ae
    for value, count in (
        (c, 1 + ac.astype(np.uint8) + cd + ce),
        (d, 1 + ad.astype(np.uint8) + cd + de),
        (e, 1 + ae.astype(np.uint8) + ce + de),
    ):
        wins = count > best
        np.copyto(out, value, where=wins)
        np.maximum(best, count, out=best)
    return out


def _nearest2(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block[..., 0::2, 0::2])


_DOWNSAMPLE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": _mean2,
    "mode": _mode2,
    "nearest": _nearest2,
}


def downsample(block: np.ndarray, method: str = "mean") -> np.ndarray:
    """Halve the last two axes of ``block`` (``ceil(n / 2)``; odd edges repeat their last row).

    Parameters
    ----------
    block : numpy.ndarray
        ``(..., y, x)``.
    method : {"mean", "mode", "nearest"}
        2 x 2 mean (integers rounded half up), the most frequent value of each 2 x 2
        window (ties: the first in reading order), or the top-left pixel.
    """
    if method not in _DOWNSAMPLE:
        raise LayoutError(f"downsampling method {method!r}: expected one of {METHODS}")
    return _DOWNSAMPLE[method](block)
