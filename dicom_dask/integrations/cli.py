"""The dicom-dask command.

  info       describe a file or folder: a slide, a series (volume) or an image's frames
  thumbnail  save a small PNG (or JPEG) picture of a slide or a series
  index      save the index sidecar of a file, slide or series (no header read again)
  refs       write kerchunk references
  convert    copy a slide to OME-Zarr, a series or an image's frames to a zarr array
  demo       generate test files and read them lazily (no network)

What a source is (a slide, a volume or frames) is what
[`source_kind`][dicom_dask.images.sources.source_kind] decides, as in every front end;
``--as`` (``refs --kind``) names it instead.

Exit status: 0 on success, 2 for a DICOM problem (the message names the file), 1 for
anything else (such as an existing destination)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicom_dask.enums import Kind
from dicom_dask.errors import (
    AmbiguousSourceError,
    DicomDaskError,
    InvalidOptionError,
    NoImagesError,
)
from dicom_dask.integrations import cli_write
from dicom_dask.integrations.cli_common import (
    UsageError,
    no_select,
    storage_options,
    values_info,
    volume_info,
)
from dicom_dask.integrations.cli_parser import build_parser
from dicom_dask.integrations.cli_summary import cli_words, summary

__all__ = ["main"]


# -- info -------------------------------------------------------------------------------
def _skipped(url: str, used: Sequence[str], options: dict[str, Any]) -> list[dict[str, str]]:
    """The files of a folder (glob) that the slide or series does not use, and why (none
    for a DICOMweb study or series: the server holds DICOM instances only)."""
    from dicom_dask.errors import NoPixelDataError, NotDicomError
    from dicom_dask.frames import canonical_url
    from dicom_dask.frames.dicomweb import is_dicomweb
    from dicom_dask.images.sources import expand_sources, index_many

    if is_dicomweb(url):
        return []
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
                index_many([other], storage_options=options)  # read before: not again
            except NotDicomError:
                reason = "not DICOM"
            except NoPixelDataError:
                reason = "DICOM without pixel data"
            except DicomDaskError as exc:
                reason = f"unreadable: {exc}"
        out.append({"url": other, "reason": reason})
    return out


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
        "values": values_info(frames),
    }


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


def _slide_part(
    info: dict[str, Any], url: str, options: dict[str, Any], select: int | str | None
) -> list[str]:
    """The slide of ``info`` (and the listing of a folder's slides); the files it uses."""
    from dicom_dask.images.slide import list_slides, open_slide

    if info["folder"]:
        info["slides"] = list_slides(url, storage_options=options)
    try:
        slide = open_slide(url, storage_options=options, select=select)
    except NoImagesError as exc:  # several slides: the listing says which
        if select is not None:
            raise
        info["slide"] = None
        info["problem"] = str(exc)
        return [i["url"] for s in info.get("slides", []) for i in s["instances"]]
    info["slide"] = _slide_info(slide)
    return [u for lv in (*slide.pyramid, *slide.associated.values()) for u in lv.urls]


def _volume_part(
    info: dict[str, Any], url: str, options: dict[str, Any], select: int | str | None
) -> list[str]:
    """The volume of ``info`` (and the listing of a folder's series); the files it uses."""
    from dicom_dask.images.volume import list_series, open_volume

    folder = info["folder"]
    if folder:
        info["series"] = list_series(url, storage_options=options)
    try:
        volume = open_volume(url, storage_options=options, select=select)
    except DicomDaskError as exc:
        if not folder or (select is not None and isinstance(exc, NoImagesError)):
            raise
        info["volume"] = None
        info["problem"] = str(exc)
        return []
    info["volume"] = volume_info(volume)
    info["volume"]["values"] = values_info(volume)
    return list(volume.metadata["urls"])


def _info_document(
    url: str, options: dict[str, Any], select: int | str | None = None
) -> dict[str, Any]:
    """Everything ``info`` knows about ``url`` (the ``--json`` output); with ``select``,
    about that slide or series of a folder."""
    from dicom_dask.images.sources import read_once

    with read_once():  # each header once, whichever part of the document needs it
        return _document(url, options, select)


def _document(url: str, options: dict[str, Any], select: int | str | None) -> dict[str, Any]:
    from dicom_dask.images.sources import decide_kind, is_collection

    kind, index = decide_kind(url, storage_options=options, select=select)
    folder = index is None
    info: dict[str, Any] = {"url": url, "kind": kind.value, "folder": folder, "select": select}
    if kind is Kind.FRAMES:
        no_select(url, select)
    if not folder:  # one file: its frames, whatever it opens as
        info["file"] = _frames_info(url, options, index)
    used: list[str] = []
    if kind is Kind.SLIDE:
        used = _slide_part(info, url, options, select)
    elif kind is Kind.VOLUME:
        used = _volume_part(info, url, options, select)
    if folder or is_collection(url):
        info["skipped"] = _skipped(url, used, options) if used else []
    return info


def _info(args: argparse.Namespace) -> int:
    info = _info_document(args.url, storage_options(args.storage_option), args.select)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(summary(info))
    return 0


# -- demo ----------------------------------------------------------------------------------
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


COMMANDS = {
    "info": _info,
    "thumbnail": cli_write.thumbnail,
    "index": cli_write.index,
    "refs": cli_write.refs,
    "convert": cli_write.convert,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dicom-dask``."""
    args = build_parser(COMMANDS).parse_args(argv)
    try:
        return int(args.func(args))
    except InvalidOptionError as exc:  # an option that does not fit the source
        print(f"dicom-dask: {cli_words(str(exc))}", file=sys.stderr)
        return 1
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
