"""Assembling a stack of slices into one volume: a chunk manifest across files, its
store and dask array, and the geometry, for [`open_volume`][dicom_dask.images.volume.open_volume].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.chunks.manifest import MISSING, ChunkManifest
from dicom_dask.chunks.metadata import array_metadata, frame_codecs, output_photometric
from dicom_dask.chunks.store import DicomStore
from dicom_dask.errors import LayoutError
from dicom_dask.frames.sizes import format_size
from dicom_dask.images.geometry import ORIENTATION_TOL, GeometryPolicy, stack_geometry
from dicom_dask.images.series import SliceRecord, Stack
from dicom_dask.images.tiled import frame_chunks, place_frames
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array

__all__ = ["assemble"]


def _encoding(record: SliceRecord) -> tuple[Any, ...]:
    """What one codec configuration must share across the files of a volume."""
    header = record.index.header
    d = header.description
    syntax = "inline" if header.inline_pixel_data is not None else str(header.transfer_syntax)
    return (
        syntax,
        d.rows,
        d.columns,
        d.samples_per_pixel,
        d.bits_allocated,
        d.bits_stored,
        d.pixel_representation,
        d.photometric_interpretation,
        d.planar_configuration,
        d.pixel_keyword,
        header.element.vr,
    )


def _check_consistent(records: Sequence[SliceRecord], where: str) -> None:
    first = records[0]
    desc = first.index.header.description
    ref = (desc.rows, desc.columns, desc.samples_per_pixel, desc.dtype)
    ref_encoding = _encoding(first)
    checked: set[int] = set()
    for r in records:
        d = r.index.header.description
        if d is not desc and (d.rows, d.columns, d.samples_per_pixel, d.dtype) != ref:
            raise LayoutError(
                f"{where}: {r.url} has {format_size(d.columns, d.rows)} x {d.samples_per_pixel} "
                f"sample(s) of {d.dtype} but {first.url} has "
                f"{format_size(desc.columns, desc.rows)} x {desc.samples_per_pixel} sample(s) of "
                f"{desc.dtype}"
            )
        if id(r.index) not in checked:
            checked.add(id(r.index))
            encoding = _encoding(r)
            if encoding != ref_encoding:
                raise LayoutError(
                    f"{where}: {r.url} is encoded as {encoding} but {first.url} as "
                    f"{ref_encoding}: one volume array needs one pixel encoding (open the "
                    "files separately, or transcode them)"
                )
    orientations = np.array([r.orientation for r in records])
    spacings = np.array([r.pixel_spacing for r in records])
    bad = np.abs(orientations - orientations[0]).max(axis=1) > ORIENTATION_TOL
    if bad.any():
        r = records[int(np.flatnonzero(bad)[0])]
        raise LayoutError(
            f"{where}: {r.url} frame {r.frame + 1} has orientation "
            f"{list(r.orientation)}, {first.url} {list(first.orientation)}"
        )
    bad = ~np.isclose(spacings, spacings[0], rtol=1e-4).all(axis=1)
    if bad.any():
        r = records[int(np.flatnonzero(bad)[0])]
        raise LayoutError(
            f"{where}: {r.url} has pixel spacing {list(r.pixel_spacing)}, {first.url} "
            f"{list(first.pixel_spacing)}"
        )


def _placed(
    items: list[tuple[tuple[int, ...], SliceRecord]],
    grid: tuple[int, ...],
    storage_options: StorageOptions,
) -> ChunkManifest:
    """The manifest of ``items`` (chunk coordinates, slice) on ``grid``."""
    simple = all(
        r.index.ranges.frames_per_chunk == 1 and r.index.header.inline_pixel_data is None
        for _, r in items
    )
    if simple:  # byte ranges straight from each file's frame table
        urls: dict[str, int] = {}
        url_index = np.full(grid, MISSING, dtype=np.int32)
        offsets = np.zeros(grid, dtype=np.uint64)
        lengths = np.zeros(grid, dtype=np.uint64)
        encoding = np.zeros(grid, dtype=np.uint8)
        for coords, r in items:
            ranges = r.index.ranges
            url_index[coords] = urls.setdefault(r.url, len(urls))
            offsets[coords] = ranges.offsets[r.frame]
            lengths[coords] = ranges.lengths[r.frame]
            encoding[coords] = ranges.encoding[r.frame]
        return ChunkManifest(tuple(urls), url_index, offsets, lengths, encoding)
    per_file: dict[str, list[tuple[tuple[int, ...], SliceRecord]]] = {}
    for coords, r in items:
        per_file.setdefault(r.url, []).append((coords, r))
    placements = []
    for group in per_file.values():
        full = frame_chunks(group[0][1].index, storage_options=storage_options)
        sel = np.array([r.frame for _, r in group])
        sub = ChunkManifest(
            full.urls,
            full.url_index[sel],
            full.offsets[sel],
            full.lengths[sel],
            full.encoding[sel],
            full.inline,
        )
        placements.append((np.array([c for c, _ in group]), sub))
    return place_frames(placements, grid)


def assemble(
    stack: Stack,
    *,
    where: str,
    policy: GeometryPolicy,
    raw: bool,
    backend: str,
    fill_value: Any,
    storage_options: StorageOptions,
    chunk_bytes: int,
) -> dict[str, Any]:
    """The fields of the [`Volume`][dicom_dask.images.volume.Volume] of ``stack``: its
    geometry, one chunk manifest across its files, the store and the dask array."""
    records = list(stack.records)
    _check_consistent(records, where)
    by_position: dict[tuple[float, ...], dict[tuple[Any, ...], SliceRecord]] = {}
    for r in records:
        key = tuple(np.round(r.position, 3))
        values = tuple(v for _, v in r.channel if _ in stack.channel_names)
        slot = by_position.setdefault(key, {})
        if values in slot:
            other = slot[values]
            raise LayoutError(
                f"{where}: duplicated slice position {list(r.position)}: {other.url} frame "
                f"{other.frame + 1} and {r.url} frame {r.frame + 1}"
            )
        slot[values] = r
    keys = list(by_position)
    positions = np.array([next(iter(by_position[k].values())).position for k in keys])
    first = records[0]
    geometry = stack_geometry(
        positions,
        first.orientation,
        first.pixel_spacing,
        policy=policy,
        where=where,
        single_spacing=first.thickness,
    )
    header = first.index.header
    desc = header.description
    channel_sizes = tuple(len(v) for v in stack.channel_values)
    tail = (desc.samples_per_pixel,) if desc.samples_per_pixel > 1 else ()
    grid = (len(geometry.order), 1, 1, *channel_sizes, *((1,) if tail else ()))
    items: list[tuple[tuple[int, ...], SliceRecord]] = []
    slice_files: list[list[Any] | None] = []
    source_index: dict[str, int] = {}
    source_datasets: list[Any] = []
    source_frames = np.full((len(geometry.order), *channel_sizes, 2), -1, dtype=np.int64)
    combos = list(np.ndindex(*channel_sizes)) if channel_sizes else [()]
    for out_index, src in enumerate(geometry.order.tolist()):
        if src < 0:
            slice_files.append(None)
            continue
        slot = by_position[keys[src]]
        head = next(iter(slot.values()))
        slice_files.append([head.url, head.frame])
        for combo in combos:
            values = tuple(vals[i] for vals, i in zip(stack.channel_values, combo, strict=True))
            found = slot.get(values)
            if found is None:
                raise LayoutError(
                    f"{where}: no frame at position {list(positions[src])} for "
                    f"{dict(zip(stack.channel_names, values, strict=True))}"
                )
            items.append(((out_index, 0, 0, *combo, *((0,) if tail else ())), found))
            if found.url not in source_index:
                source_index[found.url] = len(source_datasets)
                source_datasets.append(found.index.header.dataset)
            source_frames[(out_index, *combo)] = (source_index[found.url], found.frame)
    manifest = _placed(items, grid, storage_options)
    files = {r.url for r in records}
    shape = (len(geometry.order), desc.rows, desc.columns, *channel_sizes, *tail)
    chunk = (1, desc.rows, desc.columns, *(1,) * len(channel_sizes), *tail)
    axes = "fyx" + "c" * len(channel_sizes) + ("s" if tail else "")
    codecs = frame_codecs(header, frames_per_chunk=1, as_rgb=not raw, backend=backend, axes=axes)
    ds = header.dataset
    meta = {
        "series_instance_uid": first.series_uid,
        "stack": first.stack,
        "modality": str(ds.get("Modality", "")),
        "urls": sorted(files),
        "slice_files": slice_files,
        "photometric_interpretation": output_photometric(
            desc, as_rgb=not raw, tsyntax=str(header.transfer_syntax)
        ),
        "geometry": geometry.to_dict(),
        "coordinates": {
            name: {"dimension": dim, "values": values}
            for name, (dim, values) in stack.coordinates.items()
        },
    }
    names = ("slice", "row", "column", *stack.channel_names) + (("sample",) if tail else ())
    document = array_metadata(
        shape=shape,
        chunk_shape=chunk,
        dtype=desc.dtype,
        codecs=codecs,
        dimension_names=names,
        attributes={"dicom_dask": meta},
        fill_value=fill_value,
    )
    store = DicomStore({"": manifest}, {"zarr.json": document}, storage_options=storage_options)
    array, reader = _dask(
        store, manifest, shape, chunk, desc.dtype, codecs, fill_value, chunk_bytes
    )
    for_uid = ds.get("FrameOfReferenceUID")
    return dict(
        array=array,
        affine=geometry.affine,
        coordinate_system="PATIENT",
        frame_of_reference_uid=str(for_uid) if for_uid else None,
        channels=dict(zip(stack.channel_names, stack.channel_values, strict=True)),
        positions=geometry.positions,
        metadata=meta,
        store=store,
        sources=(source_datasets, source_frames, list(source_index)),
        indexes=tuple({id(r.index): r.index for r in records}.values()),
        reader=reader,
    )


def _dask(
    store: DicomStore,
    manifest: ChunkManifest,
    shape: tuple[int, ...],
    chunk: tuple[int, ...],
    dtype: Any,
    codecs: list[dict[str, Any]],
    fill_value: Any,
    chunk_bytes: int,
) -> tuple[dask.array.Array, Any]:
    """The dask array over ``manifest`` and the manifest reader behind it."""
    from dask.base import tokenize

    from dicom_dask.chunks.reader import ManifestArray
    from dicom_dask.images.lazy import frames_per_block, reader_dask

    reader = ManifestArray(
        store,
        "",
        shape=shape,
        chunk_shape=chunk,
        dtype=dtype,
        codecs=codecs,
        fill_value=fill_value,
        manifest=manifest,
    )
    chunks = (frames_per_block(shape, dtype, chunk_bytes), *shape[1:])
    token = tokenize(manifest.urls, manifest.offsets.tobytes(), codecs, shape, chunks, fill_value)
    array = reader_dask(reader, chunks, f"dicom-volume-{token}")
    reader.array_name = array.name  # what Volume.compute checks before reading directly
    return array, reader
