"""``OpenSlide``: the openslide-python API over a [`Slide`][dicom_dask.images.slide.Slide].

Existing OpenSlide code runs unchanged on DICOM slides, local or remote: sizes are
``(width, height)``, ``read_region`` takes its location in level-0 pixels and returns
an RGBA PIL image whose pixels outside the slide (and in tiles a TILED_SPARSE
instance lacks) are transparent, and associated images carry OpenSlide's names
(``label``, ``macro``, ``thumbnail``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    from PIL import Image

    from dicom_dask.images.level import Level
    from dicom_dask.images.slide import Slide

__all__ = ["OpenSlide"]

#: OpenSlide's names for the associated images, and ours.
_ASSOCIATED = {"label": "label", "macro": "overview", "thumbnail": "thumbnail"}
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
_SKIPPED = {
    "PerFrameFunctionalGroupsSequence",
    "PixelData",
    "ICCProfile",
    "FileMetaInformationGroupLength",
}


def _flatten(ds: Any, prefix: str, out: dict[str, str]) -> None:
    """DICOM attributes as ``dicom.Keyword`` / ``dicom.Seq[0].Keyword`` strings, the way
    OpenSlide's DICOM driver reports them (binary values and per-frame groups left out)."""
    for elem in ds:
        keyword = elem.keyword
        if not keyword or keyword in _SKIPPED or elem.VR in _BINARY_VRS:
            continue
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                _flatten(item, f"{prefix}{keyword}[{i}].", out)
            continue
        value = elem.value
        name = f"{prefix}{keyword}"
        if elem.VR == "AT":  # a tag is reported as its group and element numbers
            tags = value if isinstance(value, Sequence) else [value]
            for i, tag in enumerate(tags):
                out[f"{name}[{2 * i}]"] = str(int(tag) >> 16)
                out[f"{name}[{2 * i + 1}]"] = str(int(tag) & 0xFFFF)
        elif value is None:
            out[name] = ""
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            for i, v in enumerate(value):
                out[f"{name}[{i}]"] = _text(v, elem.VR)
        else:
            out[name] = _text(value, elem.VR)


def _text(value: Any, vr: str) -> str:
    """A value as OpenSlide prints it: binary floats with 17 significant digits, decimal
    strings as written."""
    if vr in ("FL", "FD"):
        return f"{float(value):.17g}"
    if vr == "DS":
        return str(getattr(value, "original_string", None) or value)
    return str(value)


def _icc(ds: Any) -> bytes | None:
    if "ICCProfile" in ds:
        return bytes(ds.ICCProfile)
    for item in ds.get("OpticalPathSequence", []) or []:
        if "ICCProfile" in item:
            return bytes(item.ICCProfile)
    return None


def _to_rgb8(region: np.ndarray, bits: int = 8) -> np.ndarray:
    """``(h, w[, s])`` stored values as ``(h, w, 3)`` uint8 (grey repeated).

    ``bits`` is Bits Stored: 1-bit masks become 0/255, deeper integers are scaled from
    their full range (the same scale for every region of a level), floats are clipped.
    """
    if region.dtype == bool or bits == 1:
        region = (region != 0).astype(np.uint8) * 255
    elif region.dtype.kind == "f":
        region = np.clip(np.round(region), 0, 255).astype(np.uint8)
    elif region.dtype != np.uint8 or bits != 8:
        low = -(2 ** (bits - 1)) if region.dtype.kind == "i" else 0
        scale = 255.0 / (2**bits - 1)
        region = np.round((region.astype(np.float64) - low) * scale)
        region = np.clip(region, 0, 255).astype(np.uint8)
    if region.ndim == 2:
        return np.repeat(region[..., None], 3, axis=-1)
    if region.shape[-1] == 1:
        return np.repeat(region, 3, axis=-1)
    return region[..., :3]


def _bits(level: Any) -> int:
    return int(level.image.index.header.description.bits_stored)


class _AssociatedImages(Mapping[str, "Image.Image"]):
    """OpenSlide's ``associated_images``: decoded only when asked for."""

    def __init__(self, slide: Slide) -> None:
        self._slide = slide
        self._names = [n for n, ours in _ASSOCIATED.items() if ours in slide.associated]

    def __getitem__(self, name: str) -> Image.Image:
        from PIL import Image

        if name not in self._names:
            raise KeyError(name)
        level = self._slide.associated[_ASSOCIATED[name]]
        rows, cols = level.matrix_shape
        rgb = _to_rgb8(level.read_region((0, 0), (cols, rows)), _bits(level))
        alpha = np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)
        return Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA")

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class OpenSlide:
    """A DICOM slide with the interface of ``openslide.OpenSlide``.

    Parameters
    ----------
    slide : Slide, str or path
        An opened [`Slide`][dicom_dask.images.slide.Slide], or anything
        [`open_slide`][dicom_dask.images.slide.open_slide] opens (a folder, a file of the slide, a
        URL).
    storage_options : mapping or callable, optional
        Passed to [`open_slide`][dicom_dask.images.slide.open_slide] when ``slide`` is not opened
        yet.
    channel, plane : int
        The optical path (or segment) and focal plane shown (OpenSlide shows one).
    **kwargs
        Other [`open_slide`][dicom_dask.images.slide.open_slide] options (``select``, ``index``...).
    """

    def __init__(
        self,
        slide: Slide | str | os.PathLike[str],
        *,
        storage_options: StorageOptions = None,
        channel: int = 0,
        plane: int = 0,
        **kwargs: Any,
    ) -> None:
        from dicom_dask.images.slide import Slide, open_slide

        if not isinstance(slide, Slide):
            slide = open_slide(slide, storage_options=storage_options, **kwargs)
        self._slide: Slide | None = slide
        self.channel = int(channel)
        self.plane = int(plane)

    # -- openslide-python's API ----------------------------------------------------------
    @property
    def slide(self) -> Slide:
        """The underlying [`Slide`][dicom_dask.images.slide.Slide] (raises once closed)."""
        if self._slide is None:
            raise ValueError("the slide is closed")
        return self._slide

    def _level(self, level: int) -> Level:
        pyramid = self.slide.pyramid
        if not 0 <= level < len(pyramid):
            raise IndexError(f"level {level} out of range: the slide has {len(pyramid)} levels")
        return pyramid[level]

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.slide.pyramid)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level."""
        return tuple((lv.matrix_shape[1], lv.matrix_shape[0]) for lv in self.slide.pyramid)

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        return self.level_dimensions[0]

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample of each level: the mean of the width and height ratios to level 0."""
        w0, h0 = self.dimensions
        return tuple((w0 / w + h0 / h) / 2.0 for w, h in self.level_dimensions)

    @cached_property
    def properties(self) -> Mapping[str, str]:
        """``openslide.*`` properties (vendor, levels, tiles, µm per pixel) and level 0's
        DICOM attributes as ``dicom.*``."""
        out: dict[str, str] = {}
        dataset = self.slide.pyramid[0].image.index.header.dataset
        meta = getattr(dataset, "file_meta", None)
        if meta is not None:
            _flatten(meta, "dicom.", out)
        _flatten(dataset, "dicom.", out)
        icc = _icc(dataset)
        if icc:
            out["openslide.icc-size"] = str(len(icc))
        for name, ours in _ASSOCIATED.items():
            if ours in self.slide.associated:
                rows, cols = self.slide.associated[ours].matrix_shape
                out[f"openslide.associated.{name}.width"] = str(cols)
                out[f"openslide.associated.{name}.height"] = str(rows)
        out["openslide.vendor"] = "dicom"
        out["openslide.level-count"] = str(self.level_count)
        for i, (lv, ds) in enumerate(zip(self.slide.pyramid, self.level_downsamples, strict=True)):
            out[f"openslide.level[{i}].width"] = str(lv.matrix_shape[1])
            out[f"openslide.level[{i}].height"] = str(lv.matrix_shape[0])
            out[f"openslide.level[{i}].downsample"] = repr(ds)
            out[f"openslide.level[{i}].tile-width"] = str(lv.tile_shape[1])
            out[f"openslide.level[{i}].tile-height"] = str(lv.tile_shape[0])
        spacing = self.slide.pyramid[0].pixel_spacing
        if spacing is not None:  # (row, column) spacing in mm -> µm per pixel
            out["openslide.mpp-y"] = f"{float(spacing[0]) * 1000.0:.17g}"  # OpenSlide's format
            out["openslide.mpp-x"] = f"{float(spacing[1]) * 1000.0:.17g}"
        return out

    @cached_property
    def associated_images(self) -> Mapping[str, Image.Image]:
        """``label``, ``macro`` (the DICOM OVERVIEW) and ``thumbnail``, when present."""
        return _AssociatedImages(self.slide)

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """The level to read for ``downsample``: the last whose downsample is not larger."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample:
                best = i
        return best

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> Image.Image:
        """An RGBA image of ``size = (width, height)`` pixels of ``level``, whose top left
        is ``location = (x, y)`` in level-0 pixels. Transparent outside the slide."""
        from PIL import Image

        w, h = (int(v) for v in size)
        if w < 0 or h < 0:
            raise ValueError(f"negative size {size}")
        lv = self._level(level)
        ds = self.level_downsamples[level]
        x, y = (math.floor(int(v) / ds) for v in location)
        rgba = np.zeros((h, w, 4), dtype=np.uint8)
        if w and h:
            region = lv.read_region((x, y), (w, h), channel=self.channel, plane=self.plane)
            rgba[..., :3] = _to_rgb8(region, _bits(lv))
            rgba[..., 3] = self._alpha(lv, x, y, w, h)
            rgba[rgba[..., 3] == 0] = 0
        return Image.fromarray(rgba, "RGBA")

    def _alpha(self, lv: Level, x: int, y: int, w: int, h: int) -> np.ndarray:
        """255 where the level has pixels: inside the matrix and in a present tile."""
        rows, cols = lv.matrix_shape
        th, tw = lv.tile_shape
        yy = np.arange(y, y + h)
        xx = np.arange(x, x + w)
        inside = ((yy >= 0) & (yy < rows))[:, None] & ((xx >= 0) & (xx < cols))[None, :]
        present = lv.tiles_present[self.channel, self.plane]
        ty = np.clip(yy // th, 0, present.shape[0] - 1)
        tx = np.clip(xx // tw, 0, present.shape[1] - 1)
        return np.where(inside & present[ty][:, tx], 255, 0).astype(np.uint8)

    def get_thumbnail(self, size: tuple[int, int]) -> Image.Image:
        """An RGB image that fits in ``size``, from the best level, on white."""
        from PIL import Image

        w0, h0 = self.dimensions
        downsample = max(w0 / size[0], h0 / size[1])
        level = self.get_best_level_for_downsample(downsample)
        tile = self.read_region((0, 0), level, self.level_dimensions[level])
        background = self.properties.get("openslide.background-color", "ffffff")
        thumb = Image.new("RGB", tile.size, f"#{background}")
        thumb.paste(tile, None, tile)
        thumb.thumbnail(size, Image.Resampling.LANCZOS)
        return thumb

    def set_cache(self, cache: Any) -> None:
        """Accepted for compatibility; decoded tiles are not cached here (use dask)."""

    def close(self) -> None:
        """Release the slide (no file handle is held; further use raises)."""
        self._slide = None

    def __enter__(self) -> OpenSlide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._slide is None else repr(self._slide)
        return f"dicom_dask.OpenSlide({state})"
