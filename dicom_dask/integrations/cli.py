"""The dicom-dask command.

  info       describe a file or folder: a slide, a series (volume) or an image's frames
  thumbnail  save a small PNG (or JPEG) picture of a slide or a series
  index      save the index sidecar of a file, slide or series (no header read again)
  refs       write kerchunk references
  convert    copy a slide to OME-Zarr, a series or an image's frames to a zarr array
  demo       generate test files and read them lazily (no network)

Exit status: 0 on success, 2 for a DICOM problem (the message names the file), 1 for
anything else (such as an existing destination)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicom_dask.errors import AmbiguousSourceError, DicomDaskError, NoImagesError
from dicom_dask.frames.sizes import format_size
from dicom_dask.integrations.cli_summary import cli_words, summary

__all__ = ["main"]

DESCRIPTION = """Describe, picture, index and convert DICOM slides, series and files,
reading only the bytes needed (local disk, S3, GCS, HTTP, DICOMweb). Run
"dicom-dask COMMAND --help" for a command's options.

Exit status: 0 on success, 2 for a DICOM problem (the message names the file), 1 for
anything else (such as an existing destination)."""


class UsageError(Exception):
    """A problem with the command line or the destination (exit status 1)."""


def _storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"dicom-dask: --storage-option expects key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _select_value(text: str) -> int | str:
    """``--select``: an index (an integer) or a UID or label, as ``info`` lists them."""
    try:
        return int(text)
    except ValueError:
        return text


def _kind(url: str, options: dict[str, Any], as_: str | None = None) -> tuple[str, Any]:
    """``"slide"``, ``"volume"`` or ``"frames"`` for a URL (file or folder), and the
    index of the file it was decided from (None for a folder)."""
    from dicom_dask.images.sources import classify_source

    if as_ is not None:
        return as_, None
    kind, index, _ = classify_source(url, storage_options=options)
    if kind in ("slides", "series", "dicomweb"):
        return ("slide" if kind == "slides" else "volume"), None
    return {"enhanced": "volume", "image": "frames"}.get(kind, kind), index


def _name(url: str) -> str:
    return os.path.basename(url.rstrip("/")) or url


def _skipped(url: str, used: Sequence[str], options: dict[str, Any]) -> list[dict[str, str]]:
    """The files of a folder (glob) that the slide or series does not use, and why."""
    from dicom_dask.errors import NoPixelDataError, NotDicomError
    from dicom_dask.frames import canonical_url, index_frames
    from dicom_dask.images.sources import expand_sources

    urls, discovered = expand_sources(url, storage_options=options)
    if not discovered:
        return []
    taken = {canonical_url(u) for u in used}
    out: list[dict[str, str]] = []
    for other in urls:
        if canonical_url(other) in taken:
            continue
        reason = "a DICOM image of another slide or series"
        if len(out) < 100:
            try:
                index_frames(other, storage_options=options)
            except NotDicomError:
                reason = "not DICOM"
            except NoPixelDataError:
                reason = "DICOM without pixel data"
            except DicomDaskError as exc:
                reason = f"unreadable: {exc}"
        out.append({"url": other, "reason": reason})
    return out


# -- info -------------------------------------------------------------------------------
def _frames_info(url: str, options: dict[str, Any], index: Any) -> dict[str, Any]:
    from dicom_dask.images.instance import open_frames

    frames = open_frames(url, storage_options=options, index=index)
    header = frames.index.header
    desc = header.description
    sop = header.dataset.get("SOPClassUID")
    return {
        "url": frames.url,
        "sop_class": sop.name if sop else "",
        "modality": str(header.dataset.get("Modality", "")),
        "transfer_syntax": f"{header.transfer_syntax} ({header.transfer_syntax.name})",
        "shape": list(frames.shape),
        "dtype": str(frames.dtype),
        "photometric_interpretation": desc.photometric_interpretation,
        "frames": desc.number_of_frames,
        "frame_index": frames.index.ranges.method,
        "header_requests": frames.index.requests,
        "codecs": frames.codecs,
        "values": _values_info(frames),
    }


def _values_info(source: Any) -> dict[str, Any]:
    """Rescale, units and VOI window of a Volume or Frames (empty if none applies)."""
    from dicom_dask.integrations.pixels import rescale_of, transformed_with, voi_limits

    try:
        _, transformer = transformed_with(source)
    except DicomDaskError:
        return {}
    applied = transformer.applied[0] if transformer.applied else {}
    if not str(applied.get("color", "")).endswith("MONOCHROME"):  # colour: only ICC applies
        return {"icc_profile": True} if applied.get("icc_profile") else {}
    rescale = rescale_of(transformer)
    out: dict[str, Any] = {}
    if not rescale.identity:
        pair = rescale.scale_offset
        out["rescale"] = (
            {"slope": pair[0], "intercept": pair[1]}
            if pair
            else ("per slice" if rescale.linear else "lookup table")
        )
    if rescale.units:
        out["units"] = rescale.units
    middle = int(len(transformer.frames) // 2)
    window = voi_limits(transformer, middle)
    if window is not None:
        out["window"] = [round(window[0], 3), round(window[1], 3)]
    return out


def _slide_info(slide: Any) -> dict[str, Any]:
    return {
        "levels": [
            {
                "shape": list(level.shape),
                "width": level.matrix_shape[1],
                "height": level.matrix_shape[0],
                "dtype": str(level.dtype),
                "tile": list(level.tile_shape),
                "tiles_present": f"{len(level.manifest)}/{level.tiles_present.size}",
                "pixel_spacing_mm": level.pixel_spacing,
                "downsample": ds,
                "photometric_interpretation": level.photometric_interpretation,
                "transfer_syntax": str(level.image.index.header.transfer_syntax.name),
                "instances": list(level.urls),
            }
            for level, ds in zip(slide.pyramid, slide.downsamples, strict=True)
        ],
        "optical_paths": [ch.to_dict() for ch in slide.optical_paths],
        "focal_planes_um": list(slide.focal_planes),
        "associated": {k: list(v.shape) for k, v in slide.associated.items()},
        "associated_sizes": {k: v.matrix_shape[::-1] for k, v in slide.associated.items()},
        "associated_instances": {k: list(v.urls) for k, v in slide.associated.items()},
    }


def _volume_info(volume: Any) -> dict[str, Any]:
    return {
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "modality": volume.metadata.get("modality", ""),
        "spacing_mm": list(volume.spacing),
        "affine": volume.affine.round(6).tolist(),
        "frame_of_reference_uid": volume.frame_of_reference_uid,
        "series_instance_uid": volume.metadata.get("series_instance_uid", ""),
        "channels": {k: list(v) for k, v in volume.channels.items()},
        "geometry": volume.metadata["geometry"],
        "files": len(volume.metadata["urls"]),
    }


def _info_document(
    url: str, options: dict[str, Any], select: int | str | None = None
) -> dict[str, Any]:
    """Everything ``info`` knows about ``url`` (the ``--json`` output); with ``select``,
    about that slide or series of a folder."""
    from dicom_dask.images.slide import list_slides, open_slide
    from dicom_dask.images.sources import is_collection
    from dicom_dask.images.volume import list_series, open_volume

    kind, index = _kind(url, options)
    folder = index is None
    info: dict[str, Any] = {"url": url, "kind": kind, "folder": folder, "select": select}
    used: list[str] = []
    if kind == "slide":
        if folder:
            info["slides"] = list_slides(url, storage_options=options)
        else:
            info["file"] = _frames_info(url, options, index)
        try:
            slide = open_slide(url, storage_options=options, select=select)
        except NoImagesError as exc:  # several slides: the listing says which
            if select is not None:
                raise
            info["slide"] = None
            info["problem"] = str(exc)
            used = [i["url"] for s in info.get("slides", []) for i in s["instances"]]
        else:
            info["slide"] = _slide_info(slide)
            used = [u for lv in (*slide.pyramid, *slide.associated.values()) for u in lv.urls]
    elif kind == "volume":
        if folder:
            info["series"] = list_series(url, storage_options=options)
        else:
            info["file"] = _frames_info(url, options, index)
        try:
            volume = open_volume(url, storage_options=options, select=select)
        except DicomDaskError as exc:
            if not folder or (select is not None and isinstance(exc, NoImagesError)):
                raise
            info["volume"] = None
            info["problem"] = str(exc)
        else:
            info["volume"] = _volume_info(volume)
            info["volume"]["values"] = _values_info(volume)
            used = list(volume.metadata["urls"])
    else:
        _no_select(url, select)
        info["file"] = _frames_info(url, options, index)
    if folder or is_collection(url):
        info["skipped"] = _skipped(url, used, options) if used else []
    return info


def _info(args: argparse.Namespace) -> int:
    info = _info_document(args.url, _storage_options(args.storage_option), args.select)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(summary(info))
    return 0


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

    kind, source = _open_source(url, options, as_, select)
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


def _thumbnail(args: argparse.Namespace) -> int:
    """A slide's thumbnail image (or its lowest level); a series' middle slice in its
    VOI window; an image's middle frame."""
    from PIL import Image

    options = _storage_options(args.storage_option)
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
def _index(args: argparse.Namespace) -> int:
    from dicom_dask.images.instance import open_frames
    from dicom_dask.images.slide import open_slide
    from dicom_dask.images.volume import open_volume

    options = _storage_options(args.storage_option)
    kind, index = _kind(args.url, options)
    if kind == "slide":
        slide = open_slide(args.url, storage_options=options, select=args.select)
        slide.save_index(args.output)
        print(
            f"wrote {args.output}: slide index of {sum(len(lv.images) for lv in slide.pyramid)}"
            " level instance(s)"
        )
        return 0
    if kind == "volume" and index is None:  # a series folder
        volume = open_volume(args.url, storage_options=options, select=args.select)
        volume.save_index(args.output)
        print(f"wrote {args.output}: series index of {len(volume.metadata['urls'])} file(s)")
        return 0
    _no_select(args.url, args.select)
    frames = open_frames(args.url, storage_options=options, index=index)
    frames.save_index(args.output)
    print(f"wrote {args.output}: {len(frames.manifest)} chunks ({frames.index.ranges.method})")
    return 0


def _refs(args: argparse.Namespace) -> int:
    from dicom_dask.images.sources import is_collection
    from dicom_dask.integrations.kerchunk import to_kerchunk

    options = _storage_options(args.storage_option)
    kind = args.kind
    if kind is None and is_collection(args.url):  # what the folder's first image is
        kind = _kind(args.url, options)[0]
    elif kind in (None, "frames"):
        _no_select(args.url, args.select)
    refs = to_kerchunk(args.url, storage_options=options, kind=kind, select=args.select)
    text = json.dumps(refs)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: {len(refs['refs'])} references")
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


def _open_source(
    url: str, options: dict[str, Any], as_: str | None, select: int | str | None = None
) -> tuple[str, Any]:
    """``(kind, object)``: the Slide, Volume or Frames that ``url`` holds (with
    ``select``, that slide or series of a folder)."""
    from dicom_dask.images.instance import open_frames
    from dicom_dask.images.slide import open_slide
    from dicom_dask.images.volume import open_volume

    kind, index = _kind(url, options, as_)
    if kind == "slide":
        return kind, open_slide(url, storage_options=options, select=select)
    if kind == "volume":
        return kind, open_volume(url, storage_options=options, select=select)
    _no_select(url, select)
    return kind, open_frames(url, storage_options=options, index=index)


def _no_select(url: str, select: int | str | None) -> None:
    """Refuse ``--select`` for one image's frames (it picks a slide or series of a folder)."""
    if select is not None:
        raise UsageError(
            f"{url} is one image's frames: --select picks one slide or series of a folder"
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
        attrs: dict[str, Any] = {"affine": source.affine.tolist(), **_volume_info(source)}
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


def _convert(args: argparse.Namespace) -> int:
    """A slide to OME-Zarr, a volume or frames to a zarr array, with a progress bar."""
    import dask.array as da
    import zarr

    from dicom_dask.integrations.ome_zarr import to_ome_zarr

    if getattr(args, "to", "zarr") == "dicom":
        return _convert_to_dicom(args)
    options = _storage_options(args.storage_option)
    _check_destination(args.dest, args.overwrite)
    kind, source = _open_source(args.url, options, args.as_, args.select)
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

    options = _storage_options(args.storage_option)
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
        kind, source = _open_source(args.url, options, args.as_, args.select)
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


def _demo(args: argparse.Namespace) -> int:
    """Generate a tiled JPEG file, a slide and a CT series; open them lazily and read them.

    The files go to ``--output`` when given (kept), else to a temporary folder removed at the
    end, whatever happens.
    """
    if args.frames < 1:
        raise UsageError(f"demo: --frames must be at least 1, not {args.frames}")
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        return _demo_all(out, args.frames)
    with tempfile.TemporaryDirectory(prefix="dicom-dask-demo-") as folder:
        code = _demo_all(Path(folder), args.frames)
        print(f"\nremoved {folder} (pass --output FOLDER to keep the files)")
    return code


def _demo_all(out: Path, n: int) -> int:
    """The three parts of the demo in ``out``: 0 when every check passed, else 1.

    At most two copies of the tiles are alive at once (the tiles and the frames read
    back, then the slide's level 0): the tiles are made again from their seed when
    compared or laid out, so the demo stays well under 1 GB at its default size.
    """
    ok = _demo_frames(out, n)
    level0 = _demo_level0(n, int(n**0.5))
    ok = _demo_slide(out, level0, _TILE) and ok
    del level0
    ok = _demo_volume(out) and ok
    return 0 if ok else 1


_TILE = 256


def _demo_tiles(n: int, start: int = 0, stop: int | None = None) -> Any:
    """Tiles ``start:stop`` of the ``n`` RGB tiles of 256 x 256: a colour ramp, each
    rolled by a random amount (the same tiles whatever the range)."""
    import numpy as np

    rng = np.random.default_rng(0)
    shifts = rng.integers(0, _TILE, n)[start:stop]
    yy, xx = np.mgrid[0:_TILE, 0:_TILE]
    base = np.stack([(xx + yy) % 256, (2 * xx) % 256, (3 * yy) % 256], axis=-1).astype(np.uint8)
    tiles = np.empty((len(shifts), _TILE, _TILE, 3), np.uint8)
    for i, shift in enumerate(shifts):
        tiles[i] = np.roll(base, int(shift), axis=1)
    return tiles


def _demo_level0(n: int, side: int) -> Any:
    """The first ``side**2`` tiles side by side, row after row: the slide's level 0."""
    import numpy as np

    level0 = np.empty((side * _TILE, side * _TILE, 3), np.uint8)
    for row in range(side):
        tiles = _demo_tiles(n, row * side, (row + 1) * side)
        for col, one in enumerate(tiles):
            level0[row * _TILE : (row + 1) * _TILE, col * _TILE : (col + 1) * _TILE] = one
    return level0


def _demo_frames(out: Path, n: int) -> bool:
    """Write ``n`` tiles as one JPEG file, open it lazily and read it three ways."""
    import dask.array as da
    import numpy as np
    from pydicom import uid

    from dicom_dask.images.instance import open_frames
    from dicom_dask.testing import write_dicom

    tiles = _demo_tiles(n)
    path = write_dicom(out / "demo-tiles.dcm", tiles, transfer_syntax=uid.JPEGBaseline8Bit)
    del tiles  # made again from their seed below, a few at a time
    print(f"wrote {path}: {n} JPEG tiles of {_TILE} x {_TILE} RGB, Basic Offset Table")

    t0 = time.perf_counter()
    frames = open_frames(path)
    t_open = time.perf_counter() - t0
    print(f"opened lazily in {1e3 * t_open:.1f} ms ({frames.index.requests} requests): {frames}")
    print(f"  dask array: {frames.array}")
    print(f"  decoder: {frames.codecs[-1]['configuration']['backend']}")
    t0 = time.perf_counter()
    one = frames.array[n // 2].compute()
    print(f"one frame {one.shape} in {1e3 * (time.perf_counter() - t0):.1f} ms")
    everything = np.empty(frames.array.shape, frames.array.dtype)
    t0 = time.perf_counter()
    da.store(frames.array, everything, lock=False)
    t_all = time.perf_counter() - t0
    print(f"all {n} frames in {t_all:.2f} s ({n / t_all:.0f} frames/s, threaded scheduler)")
    same = bool(np.array_equal(frames.zarr[: min(n, 16)], everything[: min(n, 16)]))
    print(f"zarr path (store + registered codec) gives the same pixels: {same}")
    # the mean error 64 frames at a time, in int16: no int64 copy of every frame
    total = 0
    for lo in range(0, n, 64):
        diff = everything[lo : lo + 64].astype(np.int16) - _demo_tiles(n, lo, lo + 64)
        total += int(np.abs(diff).sum(dtype=np.int64))
    print(f"mean |decoded - original| = {total / everything.size:.2f} (JPEG quality 90)")
    return same


def _demo_volume(out: Path) -> bool:
    """Write a shuffled CT series, open it as a Volume, transform it to HU lazily."""
    import numpy as np

    from dicom_dask.images.volume import open_volume
    from dicom_dask.testing import series_positions, write_series

    rng = np.random.default_rng(1)
    n = 64
    _, yy, xx = np.mgrid[0:n, 0:128, 0:128]
    body = ((yy - 64) ** 2 + (xx - 64) ** 2 < 50**2) * 1064
    ct = (body + rng.normal(0, 20, body.shape)).clip(0, 4095).astype(np.int16)
    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    rescale = [{"RescaleSlope": 1.0, "RescaleIntercept": -1024.0, "RescaleType": "HU"}] * n
    folder = out / "demo-ct"
    write_series(
        folder,
        ct,
        positions=series_positions(n, orientation=orientation, slice_spacing=1.25),
        orientation=orientation,
        pixel_spacing=(0.8, 0.8),
        shuffle=3,
        extra=rescale,
    )
    t0 = time.perf_counter()
    volume = open_volume(folder)
    print(
        f"\nwrote {folder}: {n} CT slices, shuffled file names; opened in "
        f"{1e3 * (time.perf_counter() - t0):.1f} ms (headers only): {volume}"
    )
    print(f"  affine (slice, row, column) -> LPS mm:\n{np.round(volume.affine, 3) + 0.0}")
    hu = volume.transformed()
    mean_inside = float(hu.array[:, 54:74, 54:74].mean().compute())
    print(f"  mean of the central region in HU: {mean_inside:.1f} (expected about 40)")
    return abs(mean_inside - 40.0) < 10.0


def _demo_slide(out: Path, level0: Any, tile: int) -> bool:
    """Write ``level0`` as a 3-level slide with a label, open it, read a region, convert."""
    import numpy as np
    from pydicom import uid
    from pydicom.uid import generate_uid

    from dicom_dask.images.slide import open_slide
    from dicom_dask.integrations.ome_zarr import to_ome_zarr
    from dicom_dask.testing import make_slide_dataset

    size = level0.shape[0]
    folder = out / "demo-slide"
    folder.mkdir(exist_ok=True)
    common: dict[str, Any] = {"frame_of_reference": generate_uid(), "container_id": "DEMO-1"}
    series = generate_uid()
    images = [(level0[:: 2**i, :: 2**i], "VOLUME", 2**i) for i in range(3)]
    images.append((level0[::16, ::16], "LABEL", 16))
    for i, (matrix, kind, factor) in enumerate(images):
        ds = make_slide_dataset(
            np.ascontiguousarray(matrix),
            tile=(tile, tile),
            transfer_syntax=uid.JPEGBaseline8Bit,
            image_type=kind,
            pixel_spacing=0.00025 * factor,
            **common,
        )
        ds.SeriesInstanceUID = series
        ds.save_as(folder / f"instance-{i}.dcm", enforce_file_format=True)
    t0 = time.perf_counter()
    slide = open_slide(folder)
    print(
        f"\nwrote {folder}: a 3-level slide with a label; opened in "
        f"{1e3 * (time.perf_counter() - t0):.1f} ms: {slide}"
    )
    for k, (level, ds_) in enumerate(zip(slide.levels, slide.downsamples, strict=True)):
        print(f"  level {k} (downsample {ds_:g}): {level}")
    x, y = min(100, size // 4), min(200, size // 4)
    w, h = min(1024, size - x), min(768, size - y)
    t0 = time.perf_counter()
    region = slide.read_region((x, y), 0, (w, h))
    print(
        f"read_region(({x}, {y}), 0, ({w}, {h})) -> {region.shape} in "
        f"{1e3 * (time.perf_counter() - t0):.1f} ms"
    )
    same = bool(np.array_equal(region, slide.levels[0][y : y + h, x : x + w].compute()))
    print(f"  equal to slicing the dask array: {same}")
    ome: Any = slide.zarr.attrs["ome"]
    axes = [a["name"] for a in ome["multiscales"][0]["axes"]]
    print(f"virtual OME-Zarr group: {sorted(slide.zarr.keys())}, axes {axes}")
    group = to_ome_zarr(slide, out / "demo-slide.ome.zarr", overwrite=True, progress=False)
    written: Any = group["1"]
    virtual: Any = slide.zarr["1"]
    copied = bool(np.array_equal(written[...], virtual[...]))
    print(f"to_ome_zarr -> {out / 'demo-slide.ome.zarr'}: level 1 identical: {copied}")
    return same and copied


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-dask",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("url", help="a file, a folder, a glob or a URL (s3://, gs://, https://...)")
        p.add_argument(
            "--select",
            type=_select_value,
            metavar="INDEX|UID",
            help="which slide or series, when the folder holds several: an index or a UID as "
            '"dicom-dask info URL" lists them (a series, container or Frame of Reference UID, '
            "or a stack label)",
        )
        p.add_argument(
            "--storage-option",
            "-s",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="an option of the file system, such as anon=true (repeat as needed)",
        )
        p.set_defaults(func=func)
        return p

    as_help = "what the source holds, when guessing from its first file is not wanted"
    p = command("info", _info, "describe a file or folder: a slide, a series or frames")
    p.add_argument("--json", action="store_true", help="print the full description as JSON")
    p = command("thumbnail", _thumbnail, "save a small picture of a slide or a series")
    p.add_argument("output", help="the picture to write (.png or .jpg)")
    p.add_argument("--size", type=int, default=512, help="longest side in pixels (512)")
    p.add_argument("--as", dest="as_", choices=["slide", "volume", "frames"], help=as_help)
    p = command("index", _index, "save the index sidecar of a file, slide or series")
    p.add_argument("output", help="the JSON file to write")
    p = command("refs", _refs, "write kerchunk references (a slide: its OME-Zarr group)")
    p.add_argument("--output", "-o", help="the JSON file to write (default: print it)")
    p.add_argument(
        "--kind",
        choices=["frames", "slide", "volume"],
        help="what to reference (default: the frames of a file; the slide or volume of a folder)",
    )
    p = command(
        "convert", _convert, "copy a slide to OME-Zarr, a series or an image's frames to zarr"
    )
    p.add_argument("dest", help="the zarr folder or URL to write")
    p.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--as", dest="as_", choices=["slide", "volume", "frames"], help=as_help)
    p.add_argument(
        "--values",
        choices=["stored", "rescaled"],
        default="stored",
        help="stored: the stored values, with the modality rescale (such as Hounsfield "
        "units) as scale_factor and add_offset attributes; rescaled: the rescaled values "
        "as float32. A rescale that changes between slices is always applied.",
    )
    p.add_argument(
        "--to",
        choices=["zarr", "dicom"],
        default="zarr",
        help="zarr (the default; a slide becomes OME-Zarr) or dicom (dest is a folder: a slide "
        "or an OME-Zarr image becomes a whole-slide pyramid, a series a new series)",
    )
    p.add_argument(
        "--transfer-syntax",
        default="jpeg",
        help="with --to dicom: jpeg, jpeg2000, jpeg2000-lossless, htj2k, htj2k-lossless, "
        "jpegls, rle or explicit (jpeg)",
    )
    p.add_argument(
        "--keep-identifiers",
        action="store_true",
        help="keep the instance UIDs and patient data of the source in what is written "
        "(by default left out: DICOM PS3.15 Annex E Basic Profile; --to dicom always keeps "
        "the patient module)",
    )
    p = sub.add_parser("demo", help="generate test files and read them lazily (no network)")
    p.add_argument("--frames", type=int, default=1024, help="number of tiles (1024)")
    p.add_argument("--output", "-o", help="folder for the generated files")
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dicom-dask``."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DicomDaskError as exc:
        message = cli_words(str(exc))
        if isinstance(exc, AmbiguousSourceError) and getattr(args, "url", None):
            message += f'\n"dicom-dask info {args.url}" lists them with their kind and size'
        print(f"dicom-dask: error: {message}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"dicom-dask: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
