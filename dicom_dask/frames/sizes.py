"""The one way dicom_dask writes an image's size for people: ``2220 x 2967 px (width x height)``.

Sizes in messages, reprs, ``dicom-dask info`` and the writers' progress labels are
width first, as OpenSlide, wsidicom and image viewers give them, and say so. Array
shapes stay NumPy's (rows first) and are always written as ``shape=(...)``.
"""

from __future__ import annotations

__all__ = ["SIZE_ORDER", "format_size"]

#: The label that says which number comes first.
SIZE_ORDER = "(width x height)"


def format_size(width: int, height: int, *, label: bool = True) -> str:
    """``"2220 x 2967 px (width x height)"``; without ``label``, ``"2220 x 2967 px"``.

    Parameters
    ----------
    width, height : int
        Columns and rows, in pixels.
    label : bool
        Append ``(width x height)``; leave it out only where the text around says it.
    """
    text = f"{int(width)} x {int(height)} px"
    return f"{text} {SIZE_ORDER}" if label else text
