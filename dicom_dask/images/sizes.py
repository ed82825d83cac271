"""The one way dicom_dask writes an image's size for people: ``2220 × 2967 px (width × height)``.

Sizes in messages, reprs, ``dicom-dask info`` and the writers' progress labels are
width first, as OpenSlide, wsidicom and image viewers give them, and say so. Array
shapes stay NumPy's (rows first) and are always written as ``shape=(...)``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SIZE_ORDER", "format_size", "format_sizes"]

#: The label that says which number comes first.
SIZE_ORDER = "(width × height)"


def format_size(width: int, height: int, *, label: bool = True) -> str:
    """``"2220 × 2967 px (width × height)"``; without ``label``, ``"2220 × 2967 px"``.

    Parameters
    ----------
    width, height : int
        Columns and rows, in pixels.
    label : bool
        Append ``(width × height)``; leave it out only where the text around says it.
    """
    text = f"{int(width)} × {int(height)} px"
    return f"{text} {SIZE_ORDER}" if label else text


def format_sizes(sizes: Iterable[tuple[int, int]]) -> str:
    """Several ``(width, height)`` sizes, labelled once:
    ``"2220 × 2967 px, 1110 × 1483 px (width × height)"``."""
    return ", ".join(format_size(w, h, label=False) for w, h in sizes) + f" {SIZE_ORDER}"
