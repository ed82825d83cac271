"""Where each slice of a stack goes in its volume: a
[`VolumeLayout`][dicom_dask.images.layout.VolumeLayout].

A `Stack` of slices (see `dicom_dask.images.series`) becomes a layout in three steps,
one function each: [`check_consistent`][dicom_dask.images.layout.check_consistent]
(one pixel encoding, orientation and pixel spacing),
[`slots_by_position`][dicom_dask.images.layout.slots_by_position] (the slices at each
position, one per channel value, duplicates refused) and
[`volume_layout`][dicom_dask.images.layout.volume_layout] (the geometry of the positions,
then each output slice's files and frames). Pure NumPy: the chunk manifest, zarr
metadata, store and dask array are built from the layout by
[`assemble`][dicom_dask.images.assembly.assemble].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_dask.errors import LayoutError
from dicom_dask.frames import FrameIndex
from dicom_dask.frames.header import PixelDescription
from dicom_dask.frames.sizes import format_size
from dicom_dask.images.geometry import (
    ORIENTATION_TOL,
    GeometryPolicy,
    StackGeometry,
    stack_geometry,
)
from dicom_dask.images.series import SliceRecord, Stack

__all__ = [
    "PositionSlots",
    "VolumeLayout",
    "check_consistent",
    "slots_by_position",
    "volume_layout",
]

#: The slices at each distinct position (rounded to 1 µm), in input order, each keyed
#: by its values along the stack's channel dimensions.
PositionSlots = dict[tuple[float, ...], dict[tuple[Any, ...], SliceRecord]]
#: Chunk coordinates on the volume's manifest grid, and the slice read there.
Placement = tuple[tuple[int, ...], SliceRecord]


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


def _check_pixels(records: Sequence[SliceRecord], where: str) -> None:
    """One frame size, sample count, dtype and encoding across ``records``."""
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


def check_consistent(records: Sequence[SliceRecord], where: str) -> None:
    """Check that ``records`` can share one array: frame size, dtype, pixel encoding,
    orientation and pixel spacing.

    Raises
    ------
    LayoutError
        Naming the first slice that differs from the first one, and how.
    """
    _check_pixels(records, where)
    first = records[0]
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


def slots_by_position(stack: Stack, where: str) -> PositionSlots:
    """The slices of ``stack`` per position, each keyed by its channel values.

    Raises
    ------
    LayoutError
        When two slices have the same position and channel values.
    """
    by_position: PositionSlots = {}
    for r in stack.records:
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
    return by_position


@dataclass(frozen=True, eq=False)
class _Grid:
    """Each output slice's files and frames (see ``_place``)."""

    placements: tuple[Placement, ...]
    slice_files: tuple[tuple[str, int] | None, ...]
    source_datasets: tuple[Dataset, ...]
    source_frames: np.ndarray
    source_urls: tuple[str, ...]


def _place(
    stack: Stack, slots: list[dict[tuple[Any, ...], SliceRecord]], order: np.ndarray, where: str
) -> _Grid:
    """Put ``slots[order[k]]`` at output slice ``k``: its chunks and source frames.

    Raises
    ------
    LayoutError
        When a position lacks a slice for some combination of channel values.
    """
    channel_sizes = tuple(len(v) for v in stack.channel_values)
    tail = (0,) if stack.records[0].index.header.description.samples_per_pixel > 1 else ()
    placements: list[Placement] = []
    slice_files: list[tuple[str, int] | None] = []
    source_index: dict[str, int] = {}
    datasets: list[Dataset] = []
    frames = np.full((len(order), *channel_sizes, 2), -1, dtype=np.int64)
    combos = list(np.ndindex(*channel_sizes)) if channel_sizes else [()]
    for out_index, src in enumerate(order.tolist()):
        if src < 0:
            slice_files.append(None)
            continue
        slot = slots[src]
        head = next(iter(slot.values()))
        slice_files.append((head.url, head.frame))
        for combo in combos:
            values = tuple(vals[i] for vals, i in zip(stack.channel_values, combo, strict=True))
            found = slot.get(values)
            if found is None:
                raise LayoutError(
                    f"{where}: no frame at position {list(np.array(head.position))} for "
                    f"{dict(zip(stack.channel_names, values, strict=True))}"
                )
            placements.append(((out_index, 0, 0, *combo, *tail), found))
            if found.url not in source_index:
                source_index[found.url] = len(datasets)
                datasets.append(found.index.header.dataset)
            frames[(out_index, *combo)] = (source_index[found.url], found.frame)
    return _Grid(
        tuple(placements), tuple(slice_files), tuple(datasets), frames, tuple(source_index)
    )


@dataclass(frozen=True, eq=False)
class VolumeLayout:
    """What a stack of slices becomes: the geometry, and which file and frame each
    chunk of the volume array reads.

    Built by [`volume_layout`][dicom_dask.images.layout.volume_layout]; a
    [`Volume`][dicom_dask.images.volume.Volume] is made from it by
    [`Volume.from_layout`][dicom_dask.images.volume.Volume.from_layout].

    Attributes
    ----------
    where : str
        The source, as error messages name it.
    stack : Stack
        The slices (their files' headers and frame tables).
    geometry : StackGeometry
        Sorted order, affine, spacing and positions of the output slices.
    placements : tuple of (tuple of int, SliceRecord)
        For each chunk of the manifest grid ``(slice, 1, 1, *channels[, 1])``, its
        coordinates and the slice it reads (absent chunks: missing slices).
    slice_files : tuple of (str, int) or None
        ``(url, frame)`` of each output slice (its first channel), ``None`` if missing.
    source_datasets : tuple of pydicom.dataset.Dataset
        The header of each file that holds a slice, in order of first use.
    source_frames : numpy.ndarray
        ``(slices, *channels, 2)``: index into ``source_datasets`` and frame number of
        each slice and channel (``-1``: missing slice).
    source_urls : tuple of str
        The URL of each of ``source_datasets``.
    """

    where: str
    stack: Stack
    geometry: StackGeometry
    placements: tuple[Placement, ...]
    slice_files: tuple[tuple[str, int] | None, ...]
    source_datasets: tuple[Dataset, ...]
    source_frames: np.ndarray
    source_urls: tuple[str, ...]

    @property
    def first(self) -> SliceRecord:
        """The first slice of the stack: its header describes every slice's pixels."""
        return self.stack.records[0]

    @property
    def description(self) -> PixelDescription:
        """Frame size, samples and dtype shared by every slice."""
        return self.first.index.header.description

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Names of the channel dimensions (after ``column``)."""
        return self.stack.channel_names

    @property
    def channels(self) -> dict[str, tuple[Any, ...]]:
        """Name and values of each channel dimension."""
        return dict(zip(self.stack.channel_names, self.stack.channel_values, strict=True))

    @property
    def samples(self) -> tuple[int, ...]:
        """``(samples,)`` for colour slices, else ``()``: the trailing axis."""
        s = self.description.samples_per_pixel
        return (s,) if s > 1 else ()

    @property
    def shape(self) -> tuple[int, ...]:
        """``(slices, rows, columns, *channels[, samples])``."""
        d = self.description
        sizes = tuple(len(v) for v in self.stack.channel_values)
        return (len(self.geometry.order), d.rows, d.columns, *sizes, *self.samples)

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """One zarr chunk: one slice of one channel value (all samples)."""
        d = self.description
        return (1, d.rows, d.columns, *(1,) * len(self.channel_names), *self.samples)

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks along each axis of the manifest."""
        return tuple(s // c for s, c in zip(self.shape, self.chunk_shape, strict=True))

    @property
    def axes(self) -> str:
        """Axis letters for the codecs: ``f`` (slice), ``y``, ``x``, ``c`` per channel, ``s``."""
        return "fyx" + "c" * len(self.channel_names) + ("s" if self.samples else "")

    @property
    def dimension_names(self) -> tuple[str, ...]:
        """``("slice", "row", "column", *channels[, "sample"])``."""
        tail = ("sample",) if self.samples else ()
        return ("slice", "row", "column", *self.channel_names, *tail)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The decoded dtype."""
        return self.description.dtype

    @property
    def affine(self) -> np.ndarray:
        """4x4 ``(slice, row, column, 1)`` -> LPS (mm)."""
        return self.geometry.affine

    @property
    def positions(self) -> np.ndarray:
        """``(slices, 3)`` Image Position (Patient) of each output slice (NaN if missing)."""
        return self.geometry.positions

    @property
    def frame_of_reference_uid(self) -> str | None:
        """Frame of Reference UID of the first file, if any."""
        uid = self.first.index.header.dataset.get("FrameOfReferenceUID")
        return str(uid) if uid else None

    @property
    def urls(self) -> list[str]:
        """Every file of the stack, sorted."""
        return sorted({r.url for r in self.stack.records})

    @property
    def indexes(self) -> tuple[FrameIndex, ...]:
        """The parsed files of the stack, once each, in order of first slice."""
        return tuple({id(r.index): r.index for r in self.stack.records}.values())

    @property
    def sources(self) -> tuple[list[Dataset], np.ndarray, list[str]]:
        """``(datasets, frames, urls)``, as [`Volume.sources`][dicom_dask.images.volume.Volume]."""
        return (list(self.source_datasets), self.source_frames, list(self.source_urls))


def volume_layout(stack: Stack, *, where: str, policy: GeometryPolicy) -> VolumeLayout:
    """Lay ``stack`` out as a volume: check it, sort its positions, place its slices.

    Parameters
    ----------
    stack : Stack
        Slices of one series, orientation and stack (see
        ``dicom_dask.images.series.group_stacks``).
    where : str
        The source, as error messages name it.
    policy : GeometryPolicy
        Handling of irregular stacks.

    Raises
    ------
    LayoutError
        When the slices differ in size, encoding, orientation or pixel spacing, repeat
        a position, miss a channel value, or do not form a volume under ``policy``.
    """
    records = list(stack.records)
    check_consistent(records, where)
    slots = list(slots_by_position(stack, where).values())
    first = records[0]
    geometry = stack_geometry(
        np.array([next(iter(slot.values())).position for slot in slots]),
        first.orientation,
        first.pixel_spacing,
        policy=policy,
        where=where,
        single_spacing=first.thickness,
    )
    grid = _place(stack, slots, geometry.order, where)
    return VolumeLayout(
        where=where,
        stack=stack,
        geometry=geometry,
        placements=grid.placements,
        slice_files=grid.slice_files,
        source_datasets=grid.source_datasets,
        source_frames=grid.source_frames,
        source_urls=grid.source_urls,
    )
