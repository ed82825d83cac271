"""The ``dicom-dask`` commands that write: ``thumbnail``, ``index``, ``refs``, ``convert``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dicom_dask.enums import Kind
from dicom_dask.errors import DicomDaskError
from dicom_dask.frames.sizes import format_size
from dicom_dask.integrations.cli_common import (
    UsageError,
    no_select,
    open_as,
    storage_options,
    volume_info,
)

__all__ = ["convert", "index", "refs", "thumbnail"]


# -- thumbnail ----------------------------------------------------------------------------
def _window_to_uint8(image: Any, window: tuple[float, float] | None) -> Any:
    import numpy as np

    data = np.asarray(image, dtype=np.float64)
    if window is None:  # no window in the header: the 0.5th to 99.5th percentiles
        finite = data[np.isfinite(data)]
        low, high = np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0)
    else:
        low, high = window
    scaled = (data - low) / max(float(high - low), 1e-12)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)


def _thumbnail_array(
    url: str, options: dict[str, Any], as_: str | None, select: int | str | None = None
) -> tuple[Any, Any]:
    """The picture (2-D grey or RGB uint8) and the aspect (row, column spacing)."""
    import numpy as np

    from dicom_dask.integrations.pixels import transformed_with, voi_limits

    kind, source = open_as(url, options, as_, select)
    if kind == "slide":
        slide = source
        level = slide.associated.get("thumbnail") or slide.pyramid[-1]
        level_array = level.array
        if not level.squeezed:  # (c, z, y, x[, s]): the first optical path and plane
            level_array = level_array[0, 0]
        picture = np.asarray(level_array.compute())
        if picture.dtype != np.uint8:
            picture = _window_to_uint8(picture, None)
        return picture, None
    if kind == "volume":
        middle = source.spatial_shape[0] // 2
        source = source[middle]
        spacing = source.spacing[1:]
    else:
        middle = source.shape[0] // 2
        spacing = None
    if source.dtype == np.uint8 and source.shape[-1] == 3 and len(source.shape) > 3:
        array = source.array[0] if kind == "volume" else source.array[middle]
        return np.asarray(array.compute()), spacing
    photometric = ""
    try:  # the modality rescale; MONOCHROME1 is inverted after the window, below
        out, transformer = transformed_with(source, apply_presentation_lut=False)
        window = voi_limits(transformer, 0 if kind == "volume" else middle)
        photometric = str(transformer.datasets[0].get("PhotometricInterpretation", ""))
    except DicomDaskError:  # no chain to apply: the stored values
        out, window = source, None
    lazy = out.array[0] if kind == "volume" else out.array[middle]
    array = np.asarray(lazy.compute())
    while array.ndim > 2 and not (array.ndim == 3 and array.shape[-1] == 3):
        array = array[..., 0]  # the first channel (echo, temporal position...)
    invert = photometric == "MONOCHROME1"
    picture = _window_to_uint8(array, window)
    return (255 - picture if invert and picture.ndim == 2 else picture), spacing


def thumbnail(args: argparse.Namespace) -> int:
    """A slide's thumbnail image (or its lowest level); a series' middle slice in its
    VOI window; an image's middle frame."""
    from PIL import Image

    options = storage_options(args.storage_option)
    picture, spacing = _thumbnail_array(args.url, options, args.as_, args.select)
    image = Image.fromarray(picture)
    width, height = image.size
    if spacing is not None and spacing[0] > 0 and spacing[1] > 0:  # square millimetres
        height = max(1, round(height * spacing[0] / spacing[1]))
    scale = min(1.0, args.size / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    try:
        image.save(args.output)
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot write {args.output}: {exc}") from exc
    print(f"wrote {args.output}: a {format_size(*size)} picture of {args.url}")
    return 0


# -- index, refs ------------------------------------------------------------------------------
def index(args: argparse.Namespace) -> int:
    """Save the index sidecar of what the source opens as: a slide's, a volume's (a series,
    an enhanced file, one slice) or an image's frames'."""
    kind, source = open_as(args.url, storage_options(args.storage_option), None, args.select)
    source.save_index(args.output)
    if kind is Kind.SLIDE:
        instances = sum(len(lv.images) for lv in source.pyramid)
        print(f"wrote {args.output}: slide index of {instances} level instance(s)")
    elif kind is Kind.VOLUME:
        print(f"wrote {args.output}: series index of {len(source.metadata['urls'])} file(s)")
    else:
        print(f"wrote {args.output}: {len(source.manifest)} chunks ({source.index.ranges.method})")
    return 0


def refs(args: argparse.Namespace) -> int:
    """Write the kerchunk references of what the source opens as (``--kind`` names it)."""
    from dicom_dask.integrations.kerchunk import to_kerchunk

    options = storage_options(args.storage_option)
    if args.select is not None and args.kind is not None and Kind.coerce(args.kind) is Kind.FRAMES:
        no_select(args.url, args.select)
    found = to_kerchunk(args.url, storage_options=options, kind=args.kind, select=args.select)
    text = json.dumps(found)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: {len(found['refs'])} references")
    else:
        print(text)
    return 0


# -- convert ---------------------------------------------------------------------------------
def _check_destination(dest: str, overwrite: bool) -> None:
    """Refuse an existing destination unless ``overwrite`` (before reading anything)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(dest)
    if not overwrite and fs.exists(path):
        raise UsageError(
            f"{dest} already exists: pass --overwrite to replace it, or choose another destination"
        )


def _array_and_attributes(
    kind: str, source: Any, values: str, *, keep_identifiers: bool = False
) -> tuple[Any, dict[str, Any], list[str], str]:
    """What ``convert`` writes for a volume or frames: the dask array, its attributes,
    its dimension names, and a note on the values (stored or rescaled). The attributes
    carry no patient data unless ``keep_identifiers`` (UIDs replaced: see
    [`deidentify_attributes`][dicom_dask.frames.deidentify.deidentify_attributes])."""
    from dicom_dask.frames.deidentify import deidentify_attributes
    from dicom_dask.integrations.pixels import rescale_of, transformed_with

    if kind == "volume":
        dims = ["slice", "row", "column", *source.channels]
        attrs: dict[str, Any] = {"affine": source.affine.tolist(), **volume_info(source)}
    else:
        dims = ["frame", "row", "column"]
        attrs = {"dicom_dask": source.metadata["attributes"]}
    if not keep_identifiers:
        attrs = deidentify_attributes(attrs)
    dims += ["sample"] * (len(source.shape) - len(dims))
    try:
        out, transformer = transformed_with(source)
    except DicomDaskError:
        return source.array, attrs, dims, "stored values"
    rescale = rescale_of(transformer)
    if rescale.units:
        attrs["units"] = rescale.units
    if rescale.identity or not rescale.monochrome:
        return source.array, attrs, dims, "stored values (no rescale)"
    pair = rescale.scale_offset
    if values == "stored" and pair is not None:
        # CF's packed-data attributes: xarray and netCDF tools decode them
        attrs["scale_factor"], attrs["add_offset"] = pair
        return (
            source.array,
            attrs,
            dims,
            f"stored values; scale_factor {pair[0]:g} and add_offset {pair[1]:g} in the attributes",
        )
    why = "" if values == "rescaled" else " (the rescale differs between slices)"
    attrs["dicom_dask_transform"] = {"applied": transformer.applied[:4], "values": "rescaled"}
    return out.array, attrs, dims, f"rescaled values as float32{why}"


def convert(args: argparse.Namespace) -> int:
    """A slide to OME-Zarr, a volume or frames to a zarr array, with a progress bar."""
    import dask.array as da
    import zarr

    from dicom_dask.integrations.ome_zarr import to_ome_zarr

    if getattr(args, "to", "zarr") == "dicom":
        return _convert_to_dicom(args)
    options = storage_options(args.storage_option)
    _check_destination(args.dest, args.overwrite)
    kind, source = open_as(args.url, options, args.as_, args.select)
    progress = not args.quiet
    if kind == "slide":
        to_ome_zarr(
            source,
            args.dest,
            overwrite=args.overwrite,
            progress=progress,
            keep_identifiers=args.keep_identifiers,
        )
        print(f"wrote {args.dest}: OME-Zarr (NGFF 0.5)")
        return 0
    array, attrs, dims, note = _array_and_attributes(
        kind, source, args.values, keep_identifiers=args.keep_identifiers
    )
    target = zarr.create_array(
        args.dest,
        shape=array.shape,
        chunks=array.chunksize,
        dtype=array.dtype,
        overwrite=args.overwrite,
        dimension_names=dims,
        attributes=json.loads(json.dumps(attrs, default=str)),
    )
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            da.store(array, target, lock=False)  # type: ignore[arg-type]
    else:
        da.store(array, target, lock=False)  # type: ignore[arg-type]
    print(
        f"wrote {args.dest}: zarr array of shape {tuple(array.shape)} ({', '.join(dims)}), "
        f"{array.dtype}, {note}"
    )
    return 0


def _convert_to_dicom(args: argparse.Namespace) -> int:
    """``convert --to dicom``: a slide or an OME-Zarr image as a WSM pyramid, a volume as
    a new single-frame series."""
    from dicom_dask.errors import LayoutError
    from dicom_dask.integrations.writers import to_dicom_series, to_dicom_slide

    options = storage_options(args.storage_option)
    write = {
        "transfer_syntax": args.transfer_syntax,
        "storage_options": options,
        "overwrite": args.overwrite,
        "progress": not args.quiet,
    }
    if args.url.rstrip("/").endswith(".zarr"):
        if args.select is not None:
            raise UsageError(f"{args.url} is one OME-Zarr image: --select picks a DICOM slide")
        data, spacing, levels = _ome_zarr_level0(args.url, options)
        files = to_dicom_slide(data, args.dest, pixel_spacing=spacing, levels=levels, **write)
    else:
        kind, source = open_as(args.url, options, args.as_, args.select)
        if kind == "slide":
            files = to_dicom_slide(source, args.dest, associated=True, **write)
        elif kind == "volume":
            files = to_dicom_series(source, args.dest, **write)
        else:
            raise LayoutError(f"{args.url}: --to dicom writes slides and volumes, not {kind}")
    print(f"wrote {len(files)} DICOM instances in {args.dest}")
    return 0


def _ome_zarr_level0(url: str, options: dict[str, Any]) -> tuple[Any, Any, int]:
    """Level 0 of an OME-Zarr image as ``(y, x[, s])``, its spacing in mm, its level count."""
    import dask.array as da
    import zarr

    from dicom_dask.errors import LayoutError

    group = zarr.open_group(url, mode="r", storage_options=options or None)
    attrs: dict[str, Any] = dict(group.attrs)
    multiscales: Any = attrs.get("ome", attrs).get("multiscales")
    if not multiscales:
        raise LayoutError(f"{url}: no OME-Zarr multiscales")
    ms: dict[str, Any] = multiscales[0]
    axes = [a["name"] if isinstance(a, dict) else a for a in ms["axes"]]
    dataset = ms["datasets"][0]
    array = da.from_zarr(group[dataset["path"]])
    for name in [a for a in axes if a not in ("c", "y", "x")]:
        if array.shape[axes.index(name)] != 1:
            raise LayoutError(f"{url}: axis {name!r} has several planes; write one of them")
        array = array.take(0, axis=axes.index(name))
        axes.remove(name)
    if "c" in axes:
        array = da.moveaxis(array, axes.index("c"), -1)
    spacing = None
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            sy, sx, _ = _spatial(transform, ms)
            units = {a["name"]: a.get("unit") for a in ms["axes"] if isinstance(a, dict)}
            factor = {"micrometer": 1e-3, "millimeter": 1.0, "nanometer": 1e-6}.get(
                str(units.get("y")), 1.0
            )
            spacing = (sy * factor, sx * factor)
    return array, spacing, len(ms["datasets"])


def _spatial(transform: dict[str, Any], ms: dict[str, Any]) -> list[float]:
    """The scale of y and x (then c) from a scale transform over the multiscale's axes."""
    names = [a["name"] if isinstance(a, dict) else a for a in ms["axes"]]
    scale = dict(zip(names, transform["scale"], strict=False))
    return [float(scale.get("y", 1.0)), float(scale.get("x", 1.0)), float(scale.get("c", 1.0))]
