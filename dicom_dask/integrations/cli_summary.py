"""The readable output of ``dicom-dask info``, from its ``--json`` document.

Sizes are written as everywhere in dicom_dask: ``2220 x 2967 px (width x height)``
(see [`format_size`][dicom_dask.frames.sizes.format_size]); array shapes are NumPy's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from dicom_dask.frames.sizes import format_size

__all__ = ["cli_words", "summary"]


def cli_words(message: str) -> str:
    """A library message in the command's words: ``select=`` becomes ``--select``,
    ``overwrite=True`` ``--overwrite``."""
    message = message.replace("pass overwrite=True", "pass --overwrite")
    message = re.sub(r"\bselect=(?=\s|$)", "--select", message)
    return re.sub(r"\bselect=", "--select ", message)


def _rescale_formula(slope: float, intercept: float, units: str) -> str:
    """The modality rescale as a person reads it: ``HU = stored - 1024``."""
    if slope == 1:
        text = "stored"
    elif slope == -1:
        text = "-stored"
    else:
        text = f"{slope:g} x stored"
    if intercept:
        text += f" {'-' if intercept < 0 else '+'} {abs(intercept):g}"
    return f"{units or 'value'} = {text}"


def _fmt_values(values: dict[str, Any]) -> list[str]:
    lines = []
    rescale = values.get("rescale")
    units = values.get("units") or ""
    if isinstance(rescale, dict):
        formula = _rescale_formula(rescale["slope"], rescale["intercept"], units)
        lines.append(f"values: {formula} (modality rescale)")
    elif rescale:
        lines.append(f"values: rescaled by a {rescale}" + (f" to {units}" if units else ""))
    if values.get("icc_profile"):
        lines.append("colour: an ICC profile is present (transformed() applies it)")
    if values.get("window"):
        low, high = values["window"]
        lines.append(f"display window: {low:g} to {high:g}" + (f" {units}" if units else ""))
    return lines


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    if not uid:
        return "slide"
    name = UID(uid).name
    return name.removesuffix(" Storage") if name != uid else f"SOP class {uid}"


def _unique_key(entries: list[dict[str, Any]], fields: Sequence[str]) -> list[str]:
    """For each entry, the first of ``fields`` whose value no other entry has (what
    ``--select`` takes besides the index), or ``""``."""
    out = []
    for entry in entries:
        for name in fields:
            value = entry.get(name)
            if value and sum(e.get(name) == value for e in entries) == 1:
                out.append(str(value))
                break
        else:
            out.append("")
    return out


def _slide_listing(slides: list[dict[str, Any]]) -> list[str]:
    """One line per slide of a folder: index, UID, kind, size of level 0, description."""
    keys = _unique_key(
        slides, ("series_instance_uid", "frame_of_reference_uid", "container_identifier")
    )
    lines = []
    for i, (s, key) in enumerate(zip(slides, keys, strict=True)):
        levels = [tuple(im["matrix"]) for im in s["instances"] if im["image_type"] == "VOLUME"]
        others = sorted({im["image_type"].lower() for im in s["instances"]} - {"volume"})
        rows, cols = max(levels or [tuple(im["matrix"]) for im in s["instances"]])
        what = [
            format_size(cols, rows),
            f"{len(set(levels))} level(s)" + (f" + {', '.join(others)}" if others else ""),
        ]
        if s.get("container_identifier"):
            what.append(f"container {s['container_identifier']!r}")
        if s.get("series_description"):
            what.append(repr(s["series_description"]))
        lines.append(f"  [{i}] {key or '-'}  {_sop_name(s['sop_class_uid'])}: {', '.join(what)}")
    return lines


def _series_listing(stacks: list[dict[str, Any]]) -> list[str]:
    """One line per stack of a folder: index, UID, modality, size, description."""
    keys = _unique_key(stacks, ("series_instance_uid", "stack"))
    lines = []
    for i, (d, key) in enumerate(zip(stacks, keys, strict=True)):
        slices, rows, cols = d["shape"]
        what = [f"{slices} slice(s) of {format_size(cols or 0, rows or 0)}"]
        what += [f"{len(v)} {k}" for k, v in d.get("channels", {}).items()]
        if d.get("series_description"):
            what.append(repr(d["series_description"]))
        if d.get("stack"):
            what.append(f"stack {d['stack']!r}")
        lines.append(f"  [{i}] {key or '-'}  {d.get('modality') or 'image'}: {', '.join(what)}")
    return lines


def _folder_lines(info: dict[str, Any]) -> list[str]:
    """What a folder holds: one line per slide or series (what ``--select`` picks)."""
    if not info["folder"]:
        return []
    entries = info.get("slides" if info["kind"] == "slide" else "series") or []
    noun = "slide" if info["kind"] == "slide" else "series"
    count = f"{len(entries)} {noun}" + ("s" if noun == "slide" and len(entries) != 1 else "")
    lines = [f"{info['url']}: folder holding {count}"]
    if len(entries) > 1 or info["kind"] == "slide":
        if len(entries) > 1:
            lines[0] += "; --select takes an index or the UID shown"
        listing = _slide_listing if info["kind"] == "slide" else _series_listing
        lines.extend(listing(entries))
    if info.get("select") is not None:
        lines.append(f"--select {info['select']}:")
    return lines


def _file_lines(file: dict[str, Any], url: str) -> list[str]:
    what = " ".join(p for p in (file["modality"], file["sop_class"]) if p)
    shape = file["shape"]
    rows, cols = shape[1], shape[2]
    samples = f", {shape[3]} samples" if len(shape) > 3 else ""
    lines = [
        f"{url}: {what or 'DICOM image'}",
        f"  {file['frames']} frame(s) of {format_size(cols, rows)}{samples}, {file['dtype']}, "
        f"{file['photometric_interpretation']}",
        f"  transfer syntax: {file['transfer_syntax']}; frames located by {file['frame_index']}",
    ]
    lines.extend("  " + line for line in _fmt_values(file.get("values", {})))
    return lines


def _slide_lines(slide: dict[str, Any]) -> list[str]:
    assoc = ", ".join(
        f"{k} {format_size(*size, label=False)}" for k, size in slide["associated_sizes"].items()
    )
    lines = [f"slide: {len(slide['levels'])} level(s)" + (f"; {assoc}" if assoc else "")]
    for k, lv in enumerate(slide["levels"]):
        spacing = lv["pixel_spacing_mm"]
        um = f", {1000 * spacing[1]:.4g} um/pixel" if spacing else ""
        tile = format_size(lv["tile"][1], lv["tile"][0], label=False)
        lines.append(
            f"  level {k}: {format_size(lv['width'], lv['height'])}, {lv['dtype']} "
            f"{lv['photometric_interpretation']}, tiles {tile} ({lv['tiles_present']} "
            f"present), downsample {lv['downsample']:g}{um}, {lv['transfer_syntax']}"
        )
    if len(slide["optical_paths"]) > 1:
        lines.append(f"  optical paths: {len(slide['optical_paths'])}")
    if len(slide["focal_planes_um"]) > 1:
        lines.append(f"  focal planes (um): {slide['focal_planes_um']}")
    return lines


def _volume_lines(volume: dict[str, Any]) -> list[str]:
    slices, rows, cols = volume["shape"][:3]
    axes = ", ".join(["slice", "row", "column", *volume["channels"]])
    channels = "".join(f", {len(v)} {k}" for k, v in volume["channels"].items())
    ds, dr, dc = volume["spacing_mm"]
    lines = [
        f"volume: {volume['modality'] or 'image'}, {slices} slice(s) of "
        f"{format_size(cols, rows)}{channels}, {volume['dtype']}, from {volume['files']} "
        f"file(s); array shape {tuple(volume['shape'])} ({axes})",
        f"  spacing: slices {ds:.4g} mm apart, pixels {dc:.4g} x {dr:.4g} mm (width x height);"
        f" geometry: {_geometry(volume)}",
    ]
    lines.extend("  " + line for line in _fmt_values(volume.get("values", {})))
    return lines


def summary(info: dict[str, Any]) -> str:
    """The readable ``info`` output."""
    lines = _folder_lines(info)
    if info.get("file"):
        lines.extend(_file_lines(info["file"], info["url"]))
    if info.get("slide"):
        lines.extend(_slide_lines(info["slide"]))
    if info.get("volume"):
        lines.extend(_volume_lines(info["volume"]))
    if info.get("problem"):
        if info["folder"] and len(info.get("slides") or info.get("series") or []) > 1:
            lines.append(f"pass --select with an index or UID above to describe one {info['kind']}")
        else:
            lines.append(f"cannot open as one {info['kind']}: {cli_words(info['problem'])}")
    skipped = info.get("skipped", [])
    if skipped:
        lines.append(f"skipped {len(skipped)} file(s):")
        for item in skipped[:20]:
            lines.append(f"  {_name(item['url'])}: {item['reason']}")
        if len(skipped) > 20:
            lines.append(f"  ... and {len(skipped) - 20} more (--json lists them all)")
    return "\n".join(lines)


def _geometry(volume: dict[str, Any]) -> str:
    geometry = volume.get("geometry") or {}
    findings = geometry.get("findings") or []
    missing = geometry.get("missing_slices") or []
    text = "; ".join(str(f) for f in findings) or "regular slices"
    if missing:
        text += f"; {len(missing)} missing slice(s) filled"
    return f"{text} (geometry={geometry.get('policy', 'raise')!r})"


def _name(url: str) -> str:
    return os.path.basename(url.rstrip("/")) or url
