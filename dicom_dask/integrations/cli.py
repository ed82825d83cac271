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
from collections.abc import Sequence
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
from dicom_dask.integrations.cli_demo import demo
from dicom_dask.integrations.cli_parser import build_parser
from dicom_dask.integrations.cli_summary import cli_words, summary

__all__ = ["main"]


# -- info -------------------------------------------------------------------------------
def _skipped(url: str, used: Sequence[str], options: dict[str, Any]) -> list[dict[str, str]]:
    """The files of a folder (glob) that the slide or series does not use, and why (none
    for a DICOMweb study or series: the server holds DICOM instances only)."""
    from dicom_dask.errors import NoPixelDataError, NotDicomError
    from dicom_dask.frames import canonical_url, index_frames
    from dicom_dask.frames.dicomweb import is_dicomweb
    from dicom_dask.images.sources import expand_sources

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
                index_frames(other, storage_options=options)
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


COMMANDS = {
    "info": _info,
    "thumbnail": cli_write.thumbnail,
    "index": cli_write.index,
    "refs": cli_write.refs,
    "convert": cli_write.convert,
    "demo": demo,
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
