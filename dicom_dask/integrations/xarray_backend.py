"""xarray backend: ``xr.open_dataset(path, engine="dicom")`` and ``xr.open_datatree``.

It only parses its options, opens the source with
[`open_source`][dicom_dask.images.sources.open_source] (so what a source is follows
[`source_kind`][dicom_dask.images.sources.source_kind], the rule every front end shares)
and builds the dataset: a volume (a series, an enhanced CT/MR, one CT/MR slice) becomes a
volume dataset, a slide (file or folder) one dataset per pyramid level with coordinates
in millimetres, an image's frames a frames dataset; a label, overview or thumbnail
instance alone its total pixel matrix. The data variable is always
named ``image``; arrays stay lazy (dask), so ``.sel``/``.isel`` read only what they
select.

CF decoding follows xarray's conventions: with ``mask_and_scale=True`` (xarray's
default) the values are those of the pixel transform chain (``Volume.transformed()``,
highdicom's: Hounsfield units for CT, as float32), and a linear rescale shared by every
frame is kept in ``.encoding`` as ``scale_factor`` / ``add_offset``; with
``mask_and_scale=False`` (or ``decode_cf=False``) the values are the stored ones and
``scale_factor`` / ``add_offset`` are attributes, as in a netCDF file. A rescale that
changes from slice to slice is given as ``rescale_slope`` / ``rescale_intercept``
coordinates instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendEntrypoint

from dicom_dask.compat import dataset_json
from dicom_dask.enums import Kind
from dicom_dask.errors import DicomDaskError, NoImagesError
from dicom_dask.frames.deidentify import deidentify_json
from dicom_dask.images.sources import (
    is_collection,
    kind_of,
    open_source,
    read_once,
    source_kind,
)

__all__ = ["DicomBackendEntrypoint", "source_kind"]

_SUFFIXES = (".dcm", ".dicom", ".dic")
NAME = "image"
_AXIS_NAMES = {
    "slice": "position along the slice normal",
    "row": "position along the column direction (down the rows)",
    "column": "position along the row direction (across the columns)",
    "y": "position along the column direction of the slide (down the rows)",
    "x": "position along the row direction of the slide (across the columns)",
}


def _header_json(ds: Any, *, keep_identifiers: bool) -> str:
    """The header as DICOM JSON; without identifiers as
    [`deidentify_json`][dicom_dask.frames.deidentify.deidentify_json] leaves it."""
    doc = dataset_json(  # elements whose value does not fit their VR are left out
        ds, bulk_data_threshold=1024, bulk_data_element_handler=None, suppress_invalid_tags=True
    )
    return json.dumps(doc if keep_identifiers else deidentify_json(doc))


def _axis_attrs(name: str, frame: str) -> dict[str, str]:
    # no CF standard_name describes patient or slide coordinates: units and long_name only
    return {"units": "mm", "long_name": f"{_AXIS_NAMES[name]} ({frame})"}


def _describe_coords(data: xr.DataArray, frame: str) -> None:
    for name in ("slice", "row", "column", "y", "x"):
        if name in data.coords:
            data.coords[name].attrs.update(_axis_attrs(name, frame))
    for axis in "xyz":
        name = f"position_{axis}"
        if name in data.coords:
            data.coords[name].attrs.update(
                {"units": "mm", "long_name": f"Image Position (Patient) {axis} (LPS)"}
            )
    if "z" in data.coords and "c" in data.coords:  # slide focal planes, in mm
        data.coords["z"].attrs.update({"units": "mm", "long_name": "focal plane offset"})


def _decoded(
    stored: xr.DataArray, source: Any, *, mask_and_scale: bool, roles: int
) -> xr.DataArray:
    """``stored`` with CF-style rescale decoding (see the module docstring).

    ``source`` is a Volume or Frames; ``roles`` how many leading axes select frames
    (the frame table's dimensions).
    """
    from dicom_dask.integrations.pixels import rescale_of, transformed_with

    try:
        out, transformer = transformed_with(source)
    except DicomDaskError:  # no chain highdicom can build: the stored values as they are
        return stored
    rescale = rescale_of(transformer)
    modality = str(transformer.datasets[0].get("Modality", "") or "")
    stored.attrs["long_name"] = f"{modality} stored pixel values".strip()
    if rescale.identity or not rescale.monochrome:  # colour: stored values (RGB, palette)
        return stored
    frame_dims = stored.dims[:roles]
    scale_offset = rescale.scale_offset
    coords: dict[str, Any] = {}
    if rescale.linear and scale_offset is None:  # per-slice rescale: say it per slice
        coords = {
            "rescale_slope": (frame_dims, rescale.slope),
            "rescale_intercept": (frame_dims, rescale.intercept),
        }
    if not mask_and_scale:
        data = stored.assign_coords(coords)
        if scale_offset is not None:
            data.attrs["scale_factor"], data.attrs["add_offset"] = scale_offset
        if rescale.units:
            data.attrs["units"] = rescale.units
        if not rescale.linear:
            data.attrs["comment"] = (
                "stored values; the pixel transform (a lookup table or palette) is not "
                "linear: open with mask_and_scale=True for transformed values"
            )
        return data
    data = xr.DataArray(
        out.array, dims=stored.dims, coords=stored.coords, attrs=dict(stored.attrs), name=NAME
    ).assign_coords(coords)
    data.attrs["long_name"] = (
        f"{modality} values ({rescale.units})" if rescale.units else f"{modality} values"
    ).strip()
    if rescale.units:
        data.attrs["units"] = rescale.units
    packed = _packing(stored.dtype, transformer.datasets[0])
    if scale_offset is not None and packed is not None:  # written back as stored integers
        data.encoding.update(
            {
                "dtype": packed[0],
                "scale_factor": scale_offset[0],
                "add_offset": scale_offset[1],
                "_FillValue": packed[1],  # xarray wants one for NaN; no stored value equals it
            }
        )
    missing = np.asarray(getattr(source, "missing_slices", np.zeros(0, dtype=bool)))
    if missing.any():  # slices absent from the series (geometry="positions"): NaN
        data = data.where(xr.DataArray(~missing, dims=stored.dims[:1]))
        data.encoding = {}  # NaN has no place among the stored integers: written as floats
    return data


def _packing(dtype: np.dtype[Any], ds: Any) -> tuple[np.dtype[Any], int] | None:
    """The integer type the transformed values are written back as, and its
    ``_FillValue``: a value no stored value equals. That is ``dtype``'s minimum (signed) or
    maximum (unsigned) when Bits Stored leaves it out of range, else the next wider type's
    (16 bits stored in int16: int32). None for floats or 64-bit integers."""
    if dtype.kind not in "iu":
        return None
    info = np.iinfo(dtype)
    bits = int(ds.get("BitsStored", 0) or 0)
    if not 0 < bits < info.bits:
        if info.bits >= 64:
            return None
        dtype = np.dtype(f"{dtype.kind}{2 * dtype.itemsize}")
        info = np.iinfo(dtype)
    return dtype, int(info.min) if dtype.kind == "i" else int(info.max)


def _volume_dataset(volume: Any, *, mask_and_scale: bool, keep_identifiers: bool) -> xr.Dataset:
    stored = volume.to_xarray(keep_identifiers=keep_identifiers).rename(NAME)
    stored.attrs.pop("units", None)  # the coordinates' (mm); the values' units come below
    stored.attrs["affine_units"] = "mm"
    _describe_coords(stored, "LPS, mm from the origin of the frame of reference")
    stored.attrs["dicom_json"] = (
        _header_json(volume.sources[0][0], keep_identifiers=keep_identifiers)
        if volume.sources
        else ""
    )
    stored.attrs["geometry"] = json.dumps(volume.metadata.get("geometry", {}), default=str)
    data = _decoded(stored, volume, mask_and_scale=mask_and_scale, roles=1 + len(volume.channels))
    return xr.Dataset({NAME: data})


def _frames_dataset(frames: Any, *, mask_and_scale: bool, keep_identifiers: bool) -> xr.Dataset:
    dims = ["frame", "row", "column", "sample"][: len(frames.shape)]
    stored = xr.DataArray(frames.array, dims=dims, name=NAME)
    stored.attrs["dicom_json"] = _header_json(frames.header, keep_identifiers=keep_identifiers)
    data = _decoded(stored, frames, mask_and_scale=mask_and_scale, roles=1)
    return xr.Dataset({NAME: data})


def _level_dataset(level: Any, *, keep_identifiers: bool) -> xr.Dataset:
    """One slide level with x/y (and z, c) coordinates in mm along its axes."""
    array = level.array
    affine = level.affine if level.pixel_spacing else np.eye(4)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / np.where(spacing == 0, 1, spacing)
    origin = affine[:3, 3]
    rows, cols = level.matrix_shape
    coords: dict[str, Any] = {
        "y": float(origin @ direction[:, 0]) + np.arange(rows) * spacing[0],
        "x": float(origin @ direction[:, 1]) + np.arange(cols) * spacing[1],
    }
    dims = ["y", "x"]
    if not level.squeezed:
        dims = ["c", "z", "y", "x"]
        coords["c"] = [ch.identifier for ch in level.channels]
        coords["z"] = np.asarray(level.focal_planes) / 1000.0
    if array.ndim > len(dims):
        dims.append("sample")
    attrs = {
        "long_name": f"slide {level.image_type.lower()} image ({level.photometric_interpretation})",
        "affine": affine.ravel().tolist(),  # row by row: netCDF attributes are 1-D
        "image_type": level.image_type,
        "urls": list(level.urls),
        "photometric_interpretation": level.photometric_interpretation,
        "dicom_json": _header_json(level.image.dataset, keep_identifiers=keep_identifiers),
    }
    data = xr.DataArray(array, dims=dims, coords=coords, attrs=attrs, name=NAME)
    if level.pixel_spacing:
        _describe_coords(data, "slide coordinate system, mm")
    return xr.Dataset({NAME: data})


def _shows_identifiers(level: Any) -> bool:
    """Whether an associated image may show patient data in its pixels: a LABEL (the
    slide's label, often with a name or an accession number), or any image whose Burned
    In Annotation is YES."""
    burned = str(level.image.dataset.get("BurnedInAnnotation", "") or "").upper()
    return level.image_type == "LABEL" or burned == "YES"


_OPENER_OPTIONS = ("geometry", "select", "raw", "backend", "fill_value")


def _dataset(
    opened: str, obj: Any, *, mask_and_scale: bool, keep_identifiers: bool, level: int = 0
) -> xr.Dataset:
    """The dataset of what ``_open`` gave: a volume, one level of a slide, one associated
    image, or an image's frames."""
    private = {"keep_identifiers": keep_identifiers}
    if opened == "volume":
        return _volume_dataset(obj, mask_and_scale=mask_and_scale, **private)
    if opened == "slide":
        levels = len(obj.pyramid)
        if not -levels <= level < levels:
            raise DicomDaskError(f"level={level} but the slide has {levels} level(s)")
        out = _level_dataset(obj.pyramid[level], **private)
        out.attrs["downsamples"] = obj.downsamples
        out.attrs["level"] = level % levels
        return out
    if opened == "tiled":
        return _level_dataset(obj, **private)
    return _frames_dataset(obj, mask_and_scale=mask_and_scale, **private)


class DicomBackendEntrypoint(BackendEntrypoint):
    """Open DICOM volumes, slides and frames lazily with ``engine="dicom"``.

    Options (keywords of ``xr.open_dataset`` / ``xr.open_datatree``):

    - ``mask_and_scale`` (default True): transformed values (HU for CT) or stored ones;
    - ``kind``: ``"volume"``, ``"slide"`` or ``"frames"`` (a
      [`Kind`][dicom_dask.enums.Kind]) instead of what
      [`source_kind`][dicom_dask.images.sources.source_kind] decides;
    - ``level``: which pyramid level of a slide ``open_dataset`` gives (default 0);
    - ``keep_identifiers`` (default False): without it the header in the ``dicom_json``
      attribute, and every other value taken from it, carries no patient data (PS3.15
      Annex E, see ``docs/cloud.md``), nor does what ``to_zarr`` / ``to_netcdf`` write;
    - ``geometry``, ``select``, ``index``, ``storage_options``, ``raw``, ``backend``,
      ``fill_value``: as in ``open_volume`` / ``open_slide`` / ``open_frames``.
    """

    description = "Lazy DICOM volumes, slides and frames through dicom_dask (dask arrays)"
    url = "https://github.com/dicom-dask/dicom_dask"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "mask_and_scale",
        "decode_times",
        "decode_timedelta",
        "use_cftime",
        "concat_characters",
        "decode_coords",
        "kind",
        "level",
        "geometry",
        "select",
        "index",
        "storage_options",
        "raw",
        "backend",
        "fill_value",
        "keep_identifiers",
    )
    supports_groups = True

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        # docstring inherited
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        text = os.fspath(filename_or_obj)
        if text.rstrip("/").lower().endswith((".zarr", ".nc", ".h5")):
            return False
        return text.lower().endswith(_SUFFIXES) or os.path.isdir(text)

    @staticmethod
    def _open(
        source: Any,
        *,
        kind: Kind | str | None,
        index: Any,
        storage_options: Any,
        options: Mapping[str, Any],
    ) -> tuple[str, Any]:
        """``(kind, object)``: the Volume, Slide or Frames ``source`` opens as, or
        ``("tiled", level)`` for one associated image alone."""
        from dicom_dask.images.slide import open_tiled

        extra = {k: v for k, v in options.items() if v is not None}
        if index is not None:
            extra["index"] = index
        kind = None if kind is None else Kind.coerce(kind)
        with read_once():  # the fallback below reads no header open_source read
            try:
                opened = open_source(source, kind=kind, storage_options=storage_options, **extra)
            except NoImagesError:  # a LABEL, OVERVIEW or THUMBNAIL instance alone?
                if index is not None or "select" in extra or is_collection(source):
                    raise
                if (kind or source_kind(source, storage_options=storage_options)) is not Kind.SLIDE:
                    raise
                pixels = {k: extra[k] for k in ("raw", "backend", "fill_value") if k in extra}
                return "tiled", open_tiled(source, storage_options=storage_options, **pixels)
        return kind_of(opened).value, opened

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: bool = True,
        decode_times: bool | None = None,
        decode_timedelta: bool | None = None,
        use_cftime: bool | None = None,
        concat_characters: bool | None = None,
        decode_coords: bool | str | None = None,
        kind: Kind | str | None = None,
        level: int = 0,
        geometry: str | None = None,
        select: int | str | None = None,
        index: Any = None,
        storage_options: dict[str, Any] | None = None,
        raw: bool | None = None,
        backend: str | None = None,
        fill_value: int | float | None = None,
        keep_identifiers: bool = False,
    ) -> xr.Dataset:
        """One dataset: a volume, one level of a slide (``level=``), or a file's frames.

        The time and character decoders are accepted and have nothing to decode.
        """
        options = {
            "geometry": geometry,
            "select": select,
            "raw": raw,
            "backend": backend,
            "fill_value": fill_value,
        }
        opened, obj = self._open(
            filename_or_obj,
            kind=kind,
            index=index,
            storage_options=storage_options,
            options=options,
        )
        out = _dataset(
            opened,
            obj,
            mask_and_scale=mask_and_scale,
            level=level,
            keep_identifiers=keep_identifiers,
        )
        if drop_variables:
            out = out.drop_vars(drop_variables, errors="ignore")
        return out

    def open_datatree(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        **kwargs: Any,
    ) -> xr.DataTree:
        """A slide's pyramid (``/level0``, ``/level1``..., ``/label``...), or the one
        dataset of a volume or frames at the root; the options of ``open_dataset``."""
        return xr.DataTree.from_dict(
            self.open_groups_as_dict(filename_or_obj, drop_variables=drop_variables, **kwargs)
        )

    def open_groups_as_dict(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, xr.Dataset]:
        """A slide's pyramid: ``/level0``, ``/level1``... and its associated images (those
        that may show patient data in their pixels, the label and any image with burned-in
        annotation, only with ``keep_identifiers=True``); a volume's or a file's one
        dataset at ``/``."""
        unknown = set(kwargs) - set(self.open_dataset_parameters)
        if unknown:
            raise TypeError(f"unexpected option(s) for engine='dicom': {sorted(unknown)}")
        options = {k: kwargs.get(k) for k in _OPENER_OPTIONS}
        private = {"keep_identifiers": bool(kwargs.get("keep_identifiers", False))}
        opened, obj = self._open(
            filename_or_obj,
            kind=kwargs.get("kind"),
            index=kwargs.get("index"),
            storage_options=kwargs.get("storage_options"),
            options=options,
        )
        if opened != "slide":  # one dataset at the root
            decode = bool(kwargs.get("mask_and_scale", True))
            return self._drop(
                {"/": _dataset(opened, obj, mask_and_scale=decode, **private)}, drop_variables
            )
        groups = {"/": xr.Dataset(attrs={"downsamples": obj.downsamples})}
        for i, level in enumerate(obj.pyramid):
            groups[f"/level{i}"] = _level_dataset(level, **private)
        for name, level in obj.associated.items():
            if private["keep_identifiers"] or not _shows_identifiers(level):
                groups[f"/{name}"] = _level_dataset(level, **private)
        return self._drop(groups, drop_variables)

    @staticmethod
    def _drop(
        groups: dict[str, xr.Dataset], drop_variables: str | Iterable[str] | None
    ) -> dict[str, xr.Dataset]:
        if drop_variables:
            groups = {k: v.drop_vars(drop_variables, errors="ignore") for k, v in groups.items()}
        return groups
