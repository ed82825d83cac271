"""The ``dicom-dask`` command: ``info`` about a file or folder, ``index`` to save a
sidecar, ``refs`` for kerchunk references, ``convert`` to (OME-)Zarr, and ``demo``.

Exit status: 0 on success, 2 for a DICOM problem (the message names the file),
1 for anything else."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicom_dask.errors import DicomDaskError

__all__ = ["main"]


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


def _kind(url: str, options: dict[str, Any]) -> tuple[str, Any]:
    """``"folder"``, ``"slide"``, ``"volume"`` or ``"frames"`` for a URL, and its index."""
    from dicom_dask.images.sources import classify, is_collection

    if is_collection(url):
        return "folder", None
    kind, index = classify(url, storage_options=options)
    return {"enhanced": "volume", "image": "frames"}.get(kind, kind), index


def _frames_info(url: str, options: dict[str, Any], index: Any) -> dict[str, Any]:
    from dicom_dask.images.instance import open_frames

    frames = open_frames(url, storage_options=options, index=index)
    header = frames.index.header
    desc = header.description
    sop = header.dataset.get("SOPClassUID")
    return {
        "url": frames.url,
        "sop_class": sop.name if sop else "",
        "transfer_syntax": f"{header.transfer_syntax} ({header.transfer_syntax.name})",
        "shape": list(frames.shape),
        "dtype": str(frames.dtype),
        "photometric_interpretation": desc.photometric_interpretation,
        "frames": desc.number_of_frames,
        "frame_index": frames.index.ranges.method,
        "header_requests": frames.index.requests,
        "codecs": frames.codecs,
    }


def _slide_info(slide: Any) -> dict[str, Any]:
    return {
        "levels": [
            {
                "shape": list(level.shape),
                "tile": list(level.tile_shape),
                "tiles_present": f"{len(level.manifest)}/{level.tiles_present.size}",
                "pixel_spacing_mm": level.pixel_spacing,
                "downsample": ds,
                "instances": list(level.urls),
            }
            for level, ds in zip(slide.pyramid, slide.downsamples, strict=True)
        ],
        "optical_paths": [ch.to_dict() for ch in slide.optical_paths],
        "focal_planes_um": list(slide.focal_planes),
        "associated": {k: list(v.shape) for k, v in slide.associated.items()},
    }


def _volume_info(volume: Any) -> dict[str, Any]:
    return {
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "spacing_mm": list(volume.spacing),
        "affine": volume.affine.round(6).tolist(),
        "frame_of_reference_uid": volume.frame_of_reference_uid,
        "channels": {k: list(v) for k, v in volume.channels.items()},
        "geometry": volume.metadata["geometry"],
        "files": len(volume.metadata["urls"]),
    }


def _info(args: argparse.Namespace) -> int:
    from dicom_dask.images.slide import list_slides, open_slide
    from dicom_dask.images.volume import list_series, open_volume

    options = _storage_options(args.storage_option)
    kind, index = _kind(args.url, options)
    info: dict[str, Any] = {"url": args.url, "kind": kind}
    if kind == "folder":
        try:
            info["slides"] = list_slides(args.url, storage_options=options)
        except DicomDaskError as exc:
            info["slides"] = f"none ({exc})"
        try:
            info["series"] = list_series(args.url, storage_options=options)
        except DicomDaskError as exc:
            info["series"] = f"none ({exc})"
    elif kind == "slide":
        info.update(_frames_info(args.url, options, index))
        try:
            info["slide"] = _slide_info(open_slide(args.url, storage_options=options))
        except DicomDaskError as exc:
            info["slide"] = f"not a slide level ({exc})"
    else:
        info.update(_frames_info(args.url, options, index))
        if kind == "volume":
            info["volume"] = _volume_info(open_volume(args.url, storage_options=options))
    print(json.dumps(info, indent=2, default=str))
    return 0


def _index(args: argparse.Namespace) -> int:
    from dicom_dask.images.instance import open_frames
    from dicom_dask.images.slide import open_slide

    options = _storage_options(args.storage_option)
    kind, index = _kind(args.url, options)
    if kind in ("slide", "folder"):
        slide = open_slide(args.url, storage_options=options)
        slide.save_index(args.output)
        print(
            f"wrote {args.output}: slide index of {sum(len(lv.images) for lv in slide.pyramid)}"
            " level instance(s)"
        )
        return 0
    frames = open_frames(args.url, storage_options=options, index=index)
    frames.save_index(args.output)
    print(f"wrote {args.output}: {len(frames.manifest)} chunks ({frames.index.ranges.method})")
    return 0


def _refs(args: argparse.Namespace) -> int:
    from dicom_dask.integrations.kerchunk import to_kerchunk

    refs = to_kerchunk(
        args.url, storage_options=_storage_options(args.storage_option), kind=args.kind
    )
    text = json.dumps(refs)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: {len(refs['refs'])} references")
    else:
        print(text)
    return 0


def _convert(args: argparse.Namespace) -> int:
    """A slide to OME-Zarr, a volume or frames to a zarr array, with a progress bar."""
    import dask.array as da
    import zarr

    from dicom_dask.images.instance import open_frames
    from dicom_dask.images.slide import open_slide, to_ome_zarr
    from dicom_dask.images.volume import open_volume

    if getattr(args, "to", "zarr") == "dicom":
        return _convert_to_dicom(args)
    options = _storage_options(args.storage_option)
    kind, index = _kind(args.url, options)
    progress = not args.quiet
    if kind == "slide" or (kind == "folder" and args.as_ == "slide"):
        to_ome_zarr(
            open_slide(args.url, storage_options=options),
            args.dest,
            overwrite=args.overwrite,
            progress=progress,
        )
        print(f"wrote {args.dest}: OME-Zarr (NGFF 0.5)")
        return 0
    if kind in ("folder", "volume"):
        source: Any = open_volume(args.url, storage_options=options)
        array, attrs = source.array, {"affine": source.affine.tolist(), **_volume_info(source)}
    else:
        frames = open_frames(args.url, storage_options=options, index=index)
        array, attrs = frames.array, {"dicom_dask": frames.metadata["attributes"]}
    target = zarr.create_array(
        args.dest,
        shape=array.shape,
        chunks=array.chunksize,
        dtype=array.dtype,
        overwrite=args.overwrite,
        attributes=json.loads(json.dumps(attrs, default=str)),
    )
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            da.store(array, target, lock=False)  # type: ignore[arg-type]
    else:
        da.store(array, target, lock=False)  # type: ignore[arg-type]
    print(f"wrote {args.dest}: zarr array {list(array.shape)} {array.dtype}")
    return 0


def _convert_to_dicom(args: argparse.Namespace) -> int:
    """``convert --to dicom``: a slide or an OME-Zarr image as a WSM pyramid, a volume as
    a new single-frame series."""
    from dicom_dask.errors import LayoutError
    from dicom_dask.images.slide import list_slides, open_slide
    from dicom_dask.images.volume import open_volume
    from dicom_dask.integrations.writers import to_dicom_series, to_dicom_slide

    options = _storage_options(args.storage_option)
    write = {
        "transfer_syntax": args.transfer_syntax,
        "storage_options": options,
        "progress": not args.quiet,
    }
    if args.url.rstrip("/").endswith(".zarr"):
        data, spacing, levels = _ome_zarr_level0(args.url, options)
        files = to_dicom_slide(data, args.dest, pixel_spacing=spacing, levels=levels, **write)
    else:
        kind, _ = _kind(args.url, options)
        if kind == "folder":  # a folder of slide instances, or a series
            kind = "slide" if list_slides(args.url, storage_options=options) else "volume"
        if kind == "slide":
            slide = open_slide(args.url, storage_options=options)
            files = to_dicom_slide(slide, args.dest, associated=True, **write)
        elif kind == "volume":
            volume = open_volume(args.url, storage_options=options)
            files = to_dicom_series(volume, args.dest, **write)
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
    """Generate a tiled JPEG file, open it lazily and read it three ways."""
    import numpy as np
    from pydicom import uid

    from dicom_dask.images.instance import open_frames
    from dicom_dask.testing import write_dicom

    rng = np.random.default_rng(0)
    n, tile = args.frames, 256
    yy, xx = np.mgrid[0:tile, 0:tile]
    base = np.stack([(xx + yy) % 256, (2 * xx) % 256, (3 * yy) % 256], axis=-1).astype(np.uint8)
    tiles = np.stack([np.roll(base, int(s), axis=1) for s in rng.integers(0, tile, n)])
    out = Path(args.output or tempfile.mkdtemp(prefix="dicom-dask-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    path = write_dicom(out / "demo-tiles.dcm", tiles, transfer_syntax=uid.JPEGBaseline8Bit)
    print(f"wrote {path}: {n} JPEG tiles of {tile} x {tile} RGB, Basic Offset Table")

    t0 = time.perf_counter()
    frames = open_frames(path)
    t_open = time.perf_counter() - t0
    print(f"opened lazily in {1e3 * t_open:.1f} ms ({frames.index.requests} requests): {frames}")
    print(f"  dask array: {frames.array}")
    print(f"  decoder: {frames.codecs[-1]['configuration']['backend']}")
    t0 = time.perf_counter()
    one = frames.array[n // 2].compute()
    print(f"one frame {one.shape} in {1e3 * (time.perf_counter() - t0):.1f} ms")
    t0 = time.perf_counter()
    everything = frames.array.compute()
    t_all = time.perf_counter() - t0
    print(f"all {n} frames in {t_all:.2f} s ({n / t_all:.0f} frames/s, threaded scheduler)")
    same = np.array_equal(frames.zarr[: min(n, 16)], everything[: min(n, 16)])
    print(f"zarr path (store + registered codec) gives the same pixels: {same}")
    err = np.abs(everything.astype(int) - tiles.astype(int)).mean()
    print(f"mean |decoded - original| = {err:.2f} (JPEG quality 90)")
    return 0 if same and _demo_slide(out, tiles) and _demo_volume(out) else 1


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


def _demo_slide(out: Path, tiles: Any) -> bool:
    """Write the tiles as a 3-level slide with a label, open it, read a region, convert."""
    import numpy as np
    from pydicom import uid
    from pydicom.uid import generate_uid

    from dicom_dask.images.slide import open_slide, to_ome_zarr
    from dicom_dask.testing import make_slide_dataset

    side = int(np.sqrt(len(tiles)))
    tile = tiles.shape[1]
    grid = tiles[: side * side].reshape(side, side, tile, tile, 3)
    level0 = grid.transpose(0, 2, 1, 3, 4).reshape(side * tile, side * tile, 3)
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
    t0 = time.perf_counter()
    region = slide.read_region((100, 200), 0, (1024, 768))
    print(
        f"read_region((100, 200), 0, (1024, 768)) -> {region.shape} in "
        f"{1e3 * (time.perf_counter() - t0):.1f} ms"
    )
    same = bool(np.array_equal(region, slide.levels[0][200:968, 100:1124].compute()))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dicom-dask``."""
    parser = argparse.ArgumentParser(prog="dicom-dask", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("info", _info, "describe a file or folder: frames, slide levels, series, geometry"),
        ("index", _index, "save the index sidecar of a file or slide"),
        ("refs", _refs, "write kerchunk references (slide: its OME-Zarr group)"),
        ("convert", _convert, "copy a slide to OME-Zarr, a volume or frames to zarr"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("url")
        p.add_argument("--storage-option", "-s", action="append", default=[], metavar="KEY=VALUE")
        if name == "index":
            p.add_argument("output")
        if name == "refs":
            p.add_argument("--output", "-o")
            p.add_argument(
                "--kind",
                choices=["frames", "slide", "volume"],
                help="what to reference (default: frames of a file; the slide or "
                "volume of a folder)",
            )
        if name == "convert":
            p.add_argument("dest")
            p.add_argument("--overwrite", action="store_true")
            p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
            p.add_argument(
                "--as",
                dest="as_",
                choices=["slide", "volume"],
                default="volume",
                help="what a folder holds (default: volume)",
            )
            p.add_argument(
                "--to",
                choices=["zarr", "dicom"],
                default="zarr",
                help="zarr (default; a slide: OME-Zarr) or dicom (folder dest: a WSM pyramid, "
                "or a volume's new series)",
            )
            p.add_argument(
                "--transfer-syntax",
                default="jpeg",
                help="--to dicom: jpeg, jpeg2000[-lossless], htj2k[-lossless], jpegls, rle, "
                "explicit",
            )
        p.set_defaults(func=func)
    p = sub.add_parser("demo", help="generate a tiled JPEG file and read it lazily")
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--output", "-o", help="folder for the generated file")
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DicomDaskError as exc:
        print(f"dicom-dask: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
