"""Assembling a [`VolumeLayout`][dicom_dask.images.layout.VolumeLayout] into arrays: one
chunk manifest across the files of a stack, its zarr metadata and store, and the dask
array, for [`Volume.from_layout`][dicom_dask.images.volume.Volume.from_layout].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from dicom_dask.chunks.manifest import MISSING, ChunkManifest
from dicom_dask.chunks.metadata import array_metadata, frame_codecs, output_photometric
from dicom_dask.chunks.store import DicomStore
from dicom_dask.frames import versions_of
from dicom_dask.images.layout import Placement, VolumeLayout
from dicom_dask.images.tiled import frame_chunks, place_frames
from dicom_dask.types import StorageOptions

if TYPE_CHECKING:
    import dask.array

    from dicom_dask.chunks.reader import ManifestArray

__all__ = [
    "AssembledVolume",
    "VolumeAttributes",
    "assemble",
    "volume_attributes",
    "volume_manifest",
]


def volume_manifest(
    placements: Sequence[Placement], grid: tuple[int, ...], storage_options: StorageOptions
) -> ChunkManifest:
    """The chunk manifest of ``placements`` (chunk coordinates, slice) on ``grid``.

    Single-frame chunks take their byte ranges straight from each file's frame table;
    others (several frames per chunk, inline pixel data) go through
    ``dicom_dask.images.tiled.frame_chunks``.
    """
    simple = all(
        r.index.ranges.frames_per_chunk == 1 and r.index.header.inline_pixel_data is None
        for _, r in placements
    )
    if simple:  # byte ranges straight from each file's frame table
        urls: dict[str, int] = {}
        url_index = np.full(grid, MISSING, dtype=np.int32)
        offsets = np.zeros(grid, dtype=np.uint64)
        lengths = np.zeros(grid, dtype=np.uint64)
        encoding = np.zeros(grid, dtype=np.uint8)
        for coords, r in placements:
            ranges = r.index.ranges
            url_index[coords] = urls.setdefault(r.url, len(urls))
            offsets[coords] = ranges.offsets[r.frame]
            lengths[coords] = ranges.lengths[r.frame]
            encoding[coords] = ranges.encoding[r.frame]
        return ChunkManifest(tuple(urls), url_index, offsets, lengths, encoding)
    per_file: dict[str, list[Placement]] = {}
    for coords, r in placements:
        per_file.setdefault(r.url, []).append((coords, r))
    parts = []
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
        parts.append((np.array([c for c, _ in group]), sub))
    return place_frames(parts, grid)


class VolumeAttributes(TypedDict):
    """The ``dicom_dask`` attributes of a volume's ``zarr.json``, and its
    [`Volume.metadata`][dicom_dask.images.volume.Volume]."""

    #: Series Instance UID of the first file.
    series_instance_uid: str
    #: Stack label (Stack ID, or the volume dimension whose repeats are irregular).
    stack: str
    #: Modality of the first file.
    modality: str
    #: Every file of the stack, sorted.
    urls: list[str]
    #: ``[url, frame]`` of each slice (its first channel), ``None`` for a missing slice.
    slice_files: list[list[Any] | None]
    #: Photometric interpretation of the decoded pixels.
    photometric_interpretation: str
    #: How irregularities were handled (see
    #: [`StackGeometry.to_dict`][dicom_dask.images.geometry.StackGeometry.to_dict]).
    geometry: dict[str, Any]
    #: ``{name: {"dimension": ..., "values": [...]}}`` along the volume dimensions.
    coordinates: dict[str, dict[str, Any]]


def volume_attributes(layout: VolumeLayout, *, raw: bool) -> VolumeAttributes:
    """The ``dicom_dask`` attributes of the volume's ``zarr.json`` (and
    [`Volume.metadata`][dicom_dask.images.volume.Volume]): series, files, geometry handling,
    photometric interpretation and the values along the volume dimensions."""
    first = layout.first
    header = first.index.header
    return {
        "series_instance_uid": first.series_uid,
        "stack": first.stack,
        "modality": str(header.dataset.get("Modality", "")),
        "urls": layout.urls,
        "slice_files": [None if f is None else list(f) for f in layout.slice_files],
        "photometric_interpretation": output_photometric(
            layout.description, as_rgb=not raw, tsyntax=str(header.transfer_syntax)
        ),
        "geometry": layout.geometry.to_dict(),
        "coordinates": {
            name: {"dimension": dim, "values": values}
            for name, (dim, values) in layout.stack.coordinates.items()
        },
    }


@dataclass(frozen=True, eq=False)
class AssembledVolume:
    """The arrays over a [`VolumeLayout`][dicom_dask.images.layout.VolumeLayout].

    Attributes
    ----------
    metadata : dict
        The ``dicom_dask`` attributes (see
        [`volume_attributes`][dicom_dask.images.assembly.volume_attributes]).
    store : DicomStore
        The zarr v3 store: one array at the root.
    array : dask.array.Array
        Whole slices per dask chunk, read through ``reader``.
    reader : ManifestArray
        The manifest reader behind ``array``.
    """

    metadata: VolumeAttributes
    store: DicomStore
    array: dask.array.Array
    reader: ManifestArray


def assemble(
    layout: VolumeLayout,
    *,
    raw: bool,
    backend: str,
    fill_value: Any,
    storage_options: StorageOptions,
    chunk_bytes: int,
) -> AssembledVolume:
    """One chunk manifest across the files of ``layout``, its zarr store and dask array.

    Parameters
    ----------
    layout : VolumeLayout
        Where each slice goes (see [`volume_layout`][dicom_dask.images.layout.volume_layout]).
    raw, backend, fill_value
        As in [`open_volume`][dicom_dask.images.volume.open_volume].
    storage_options : mapping or callable, optional
        fsspec options, travelling with the array.
    chunk_bytes : int
        Target size of a dask chunk (whole slices).
    """
    manifest = volume_manifest(layout.placements, layout.grid, storage_options)
    header = layout.first.index.header
    codecs = frame_codecs(
        header, frames_per_chunk=1, as_rgb=not raw, backend=backend, axes=layout.axes
    )
    metadata = volume_attributes(layout, raw=raw)
    document = array_metadata(
        shape=layout.shape,
        chunk_shape=layout.chunk_shape,
        dtype=layout.dtype,
        codecs=codecs,
        dimension_names=layout.dimension_names,
        attributes={"dicom_dask": metadata},
        fill_value=fill_value,
    )
    store = DicomStore(
        {"": manifest},
        {"zarr.json": document},
        storage_options=storage_options,
        versions=versions_of(record.index for _, record in layout.placements),
    )
    array, reader = _dask(store, manifest, layout, codecs, fill_value, chunk_bytes)
    return AssembledVolume(metadata=metadata, store=store, array=array, reader=reader)


def _dask(
    store: DicomStore,
    manifest: ChunkManifest,
    layout: VolumeLayout,
    codecs: list[dict[str, Any]],
    fill_value: Any,
    chunk_bytes: int,
) -> tuple[dask.array.Array, ManifestArray]:
    """The dask array over ``manifest`` and the manifest reader behind it."""
    from dask.base import tokenize

    from dicom_dask.chunks.reader import ManifestArray
    from dicom_dask.images.lazy import frames_per_block, reader_dask

    shape, dtype = layout.shape, layout.dtype
    reader = ManifestArray(
        store,
        "",
        shape=shape,
        chunk_shape=layout.chunk_shape,
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
