"""Parsers: DICOM instances -> chunk grids (tiled slides; volumes).

Nothing here imports dask.
"""

from __future__ import annotations

from dicom_dask.parsers.tiled import (
    ChannelInfo,
    TiledImage,
    frame_chunks,
    place_frames,
    tiled_image,
)

__all__ = ["ChannelInfo", "TiledImage", "frame_chunks", "place_frames", "tiled_image"]
