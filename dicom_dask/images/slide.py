"""Whole-slide images: ``open_slide`` -> a [`Slide`][dicom_dask.images.slide.Slide] of lazy levels.

Instances are grouped into slides by Frame of Reference, Container Identifier and
series; levels of one series and container whose Frames of Reference differ but
whose geometry agrees are one slide, as OpenSlide opens them (with a warning). The
VOLUME instances of a slide become pyramid levels ordered by pixel spacing (level 0
= highest resolution); LABEL, OVERVIEW and THUMBNAIL instances become associated
images. The slide is also a virtual OME-Zarr group (``Slide.store``): generic zarr
and OME tools read it without a copy, and
[`to_ome_zarr`][dicom_dask.integrations.ome_zarr.to_ome_zarr] writes a real one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from dicom_dask.chunks.manifest import ChunkManifest
from dicom_dask.chunks.metadata import array_metadata
from dicom_dask.chunks.references import SLIDE_FORMAT, SLIDE_KEY, reference_set, slide_entry
from dicom_dask.chunks.sidecar import (
    entries,
    index_to_dict,
    load_index,
    open_indexes,
    save_index,
    sources_entry,
)
from dicom_dask.chunks.store import DicomStore
from dicom_dask.errors import AmbiguousSourceError, LayoutError, NoImagesError
from dicom_dask.frames import canonical_url, versions_of
from dicom_dask.frames.deidentify import deidentify_attributes
from dicom_dask.frames.dicomweb import is_dicomweb
from dicom_dask.frames.functional_groups import SlidePositions
from dicom_dask.frames.sizes import SIZE_ORDER, format_size
from dicom_dask.frames.storage import redact
from dicom_dask.images.entries import Entry
from dicom_dask.images.level import Level, merge_level
from dicom_dask.images.ome import multiscales_attributes
from dicom_dask.images.slides_grouping import (
    ASSOCIATED,
    SlideGroup,
    describe_group,
    describe_slides,
    differences,
    group_slides,
)
from dicom_dask.images.sources import index_dicomweb, index_many, list_sources
from dicom_dask.images.tiled import (
    TiledImage,
    is_tiled,
    tiled_image,
)
from dicom_dask.images.transforms import TransformOptions
from dicom_dask.types import ReferenceSet, SlideEntry, StorageOptions

if TYPE_CHECKING:
    import dask.array
    import zarr

__all__ = [
    "Slide",
    "describe_slides",
    "images_from_index",
    "instances_entry",
    "list_slides",
    "open_slide",
    "open_tiled",
    "slide_from_images",
]


def _select(groups: list[SlideGroup], select: int | str | None, where: str) -> list[TiledImage]:
    if not groups:
        raise NoImagesError(f"{where}: no tiled image (slide instance) found")
    if select is None and len(groups) == 1:
        return groups[0].images
    described = [describe_group(g) for g in groups]
    listing = "".join(  # one line each
        f"\n  [{i}] series {d['series_instance_uid']} container "
        f"{d['container_identifier']!r} frame of reference {d['frame_of_reference_uid']} "
        f"({len(d['instances'])} instances)"
        for i, d in enumerate(described)
    )
    if select is None:
        raise AmbiguousSourceError(
            f"{where}: holds {len(groups)} slides ({differences(described)}); pass select= "
            f"with an index, series UID, container identifier or Frame of Reference UID:"
            f"{listing}"
        )
    if isinstance(select, int):
        if not -len(groups) <= select < len(groups):
            raise NoImagesError(
                f"{where}: select={select} but there are {len(groups)} slides:{listing}"
            )
        return groups[select].images
    for group, d in zip(groups, described, strict=True):
        if select in (d["series_instance_uid"], d["container_identifier"]) or (
            select in d["frame_of_reference_uids"]
        ):
            return group.images
    raise NoImagesError(
        f"{where}: no slide with series UID, container identifier or Frame of Reference UID "
        f"{select!r}; there are {len(groups)}:{listing}"
    )


@dataclass(frozen=True, eq=False)
class Slide:
    """A whole-slide image: a pyramid of lazy levels and its associated images.

    Attributes
    ----------
    pyramid : list of Level
        Level 0 has the highest resolution.
    associated : dict of str to Level
        ``"label"``, ``"overview"``, ``"thumbnail"`` images that are present.
    """

    pyramid: tuple[Level, ...]
    associated: Mapping[str, Level]
    storage_options: StorageOptions = None

    # -- arrays ---------------------------------------------------------------------
    @property
    def levels(self) -> list[dask.array.Array]:
        """Dask arrays, ``(y, x[, s])`` (or ``(c, z, y, x[, s])``), level 0 first."""
        return [level.array for level in self.pyramid]

    @property
    def dimensions(self) -> list[tuple[int, int]]:
        """``(width, height)`` of each level, as OpenSlide and wsidicom report it."""
        return [(lv.matrix_shape[1], lv.matrix_shape[0]) for lv in self.pyramid]

    @property
    def downsamples(self) -> list[float]:
        """Downsample factor of each level relative to level 0."""
        base = self.pyramid[0].matrix_shape[1]
        return [base / lv.matrix_shape[1] for lv in self.pyramid]

    @property
    def pixel_spacings(self) -> list[tuple[float, float] | None]:
        """Row and column spacing of each level in mm."""
        return [lv.pixel_spacing for lv in self.pyramid]

    @property
    def optical_paths(self) -> tuple[Any, ...]:
        """Channel descriptors of level 0 (optical paths, or segments)."""
        return self.pyramid[0].channels

    @property
    def focal_planes(self) -> tuple[float, ...]:
        """Z offsets of level 0's focal planes, in µm."""
        return self.pyramid[0].focal_planes

    def _associated(self, name: str) -> dask.array.Array | None:
        level = self.associated.get(name)
        return None if level is None else level.array

    @property
    def label(self) -> dask.array.Array | None:
        """The LABEL image, if any."""
        return self._associated("label")

    @property
    def overview(self) -> dask.array.Array | None:
        """The OVERVIEW image, if any."""
        return self._associated("overview")

    @property
    def thumbnail(self) -> dask.array.Array | None:
        """The THUMBNAIL image, if any."""
        return self._associated("thumbnail")

    def read_region(
        self,
        location: tuple[int, int],
        level: int,
        size: tuple[int, int],
        *,
        channel: int = 0,
        plane: int = 0,
    ) -> np.ndarray:
        """Read ``size = (width, height)`` pixels at ``location = (x, y)`` of ``level``.

        As in wsidicom, ``location`` is in the pixel coordinates of ``level``; the
        result is a NumPy array ``(height, width[, samples])``. The same pixels are
        ``slide.levels[level][y:y + height, x:x + width]``.
        """
        if not -len(self.pyramid) <= level < len(self.pyramid):
            raise IndexError(f"level {level} out of range: the slide has {len(self.pyramid)}")
        return self.pyramid[level].read_region(location, size, channel=channel, plane=plane)

    def transformed(
        self,
        *,
        dtype: Any = np.float32,
        apply_real_world_transform: bool | None = None,
        real_world_value_map_selector: int | str = 0,
        apply_modality_transform: bool | None = None,
        apply_voi_transform: bool | None = False,
        voi_transform_selector: int | str = 0,
        voi_output_range: tuple[float, float] = (0.0, 1.0),
        apply_presentation_lut: bool = True,
        apply_palette_color_lut: bool | None = None,
        apply_icc_profile: bool | None = None,
    ) -> Slide:
        """The slide with the pixel transform chain (e.g. ICC colour correction) applied lazily.

        Switches as highdicom's ``get_total_pixel_matrix``; levels, associated images
        and ``read_region`` are transformed; [`store`][dicom_dask.images.slide.Slide.store] still
        serves stored values.
        """
        options = TransformOptions.from_arguments(locals())
        return replace(
            self,
            pyramid=tuple(level.with_transform(options) for level in self.pyramid),
            associated={k: v.with_transform(options) for k, v in self.associated.items()},
        )

    # -- virtual OME-Zarr ---------------------------------------------------------------
    def _ome_axes(self) -> tuple[str, ...]:
        has_z = any(len(lv.focal_planes) > 1 for lv in self.pyramid)
        return ("c", "z", "y", "x") if has_z else ("c", "y", "x")

    def _ome_array(self, level: Level) -> tuple[dict[str, Any], ChunkManifest]:
        """zarr.json document and manifest of a level in the NGFF ``(c[, z], y, x)`` layout."""
        axes = self._ome_axes()
        c, z = len(level.channels), len(level.focal_planes)
        if "z" not in axes and z != 1:
            raise LayoutError("focal planes differ between levels")
        s = level.samples
        rows, cols = level.matrix_shape
        th, tw = level.tile_shape
        _, _, ny, nx = level.manifest.grid_shape
        letters = ("s" if s > 1 else "c") + ("z" if "z" in axes else "") + "yx"
        shape = (c * s, *((z,) if "z" in axes else ()), rows, cols)
        chunk = (s, *((1,) if "z" in axes else ()), th, tw)
        grid = (c, *((z,) if "z" in axes else ()), ny, nx)
        header = level.image.index.header
        doc = array_metadata(
            shape=shape,
            chunk_shape=chunk,
            dtype=level.dtype,
            codecs=level._codecs(letters),
            dimension_names=axes,
            fill_value=level.fill_value,
            attributes={
                "dicom_dask": {
                    "urls": list(level.urls),
                    "image_type": level.image_type,
                    "transfer_syntax": str(header.transfer_syntax),
                    "photometric_interpretation": level.photometric_interpretation,
                    "channels": [ch.to_dict() for ch in level.channels],
                    "focal_planes_um": list(level.focal_planes),
                }
            },
        )
        return doc, level.manifest.reshape(grid)

    @cached_property
    def store(self) -> DicomStore:
        """The slide as a read-only zarr v3 group with OME-NGFF 0.5 multiscales."""
        documents: dict[str, Any] = {}
        manifests = {}
        for i, level in enumerate(self.pyramid):
            doc, manifest = self._ome_array(level)
            documents[f"{i}/zarr.json"] = doc
            manifests[str(i)] = manifest
        level0 = self.pyramid[0]
        spacings = [lv.pixel_spacing or (1e-3, 1e-3) for lv in self.pyramid]
        planes = level0.focal_planes
        attrs = multiscales_attributes(
            name=str(level0.image.dataset.get("ContainerIdentifier", "") or "slide"),
            axes=self._ome_axes(),
            spacings=spacings,
            plane_spacing=(planes[1] - planes[0]) if len(planes) > 1 else None,
            channels=[ch.to_dict() for ch in level0.channels],
            samples=level0.samples,
            dtype_max=float(np.iinfo(level0.dtype).max) if level0.dtype.kind in "ui" else 1.0,
            photometric=level0.photometric_interpretation,
        )
        attrs["dicom_dask"] = {
            "levels": [list(lv.urls) for lv in self.pyramid],
            "associated": {k: list(v.urls) for k, v in self.associated.items()},
            "downsamples": self.downsamples,
        }
        documents["zarr.json"] = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
        return DicomStore(
            manifests,
            documents,
            storage_options=self.storage_options,
            read_only=True,
            versions=versions_of(im.index for lv in self.pyramid for im in lv.images),
        )

    @cached_property
    def zarr(self) -> zarr.Group:
        """The virtual OME-Zarr group over [`store`][dicom_dask.images.slide.Slide.store].

        Plain zarr reads only the chunks a selection touches. Its arrays (``slide.zarr["0"]``,
        and the same arrays opened from [`store`][dicom_dask.images.slide.Slide.store] by
        ``zarr.open_group`` or ``xarray.open_zarr``) read through dicom_dask's codec
        pipeline, which reads, decodes and copies local frames in worker threads (see
        [`zarr_settings`][dicom_dask.chunks.pipeline.zarr_settings]), unless the zarr
        configuration names another pipeline when an array is opened.
        """
        import zarr

        return zarr.open_group(self.store, mode="r")

    # -- index sidecar ---------------------------------------------------------------
    def to_index(self, *, keep_identifiers: bool = False) -> ReferenceSet:
        """The slide's index: kerchunk references of [`store`][dicom_dask.images.slide.Slide.store]
        + parsed instances.

        A cache of the headers: without ``keep_identifiers`` they keep only what reading
        needs of the identifying attributes (see ``docs/cloud.md``, "Patient data").
        """
        refs: dict[str, Any] = {}
        for key, value in self.store.documents.items():
            doc = json.loads(value)
            if not keep_identifiers and "attributes" in doc:  # UIDs stay, as in the headers
                doc["attributes"] = deidentify_attributes(doc["attributes"], keep_uids=True)
            refs[key] = json.dumps(doc)
        for path, manifest in self.store.manifests.items():
            refs.update(manifest.to_references(path))
        images = [im for lv in self.pyramid for im in lv.images] + [
            im for lv in self.associated.values() for im in lv.images
        ]
        return reference_set(
            refs,
            sources=sources_entry(im.index for im in images),
            slide=instances_entry(images, keep_identifiers=keep_identifiers),
        )

    def save_index(
        self,
        path: str | os.PathLike[str],
        *,
        storage_options: StorageOptions = None,
        keep_identifiers: bool = False,
    ) -> None:
        """Save the index so that [`open_slide`][dicom_dask.images.slide.open_slide] with
        ``index=path`` reads no header (a cache of the headers: see
        [`to_index`][dicom_dask.images.slide.Slide.to_index] for ``keep_identifiers``)."""
        doc = self.to_index(keep_identifiers=keep_identifiers)
        save_index(doc, path, storage_options=storage_options)

    def __repr__(self) -> str:
        sizes = ", ".join(format_size(w, h, label=False) for w, h in self.dimensions)
        return (
            f"Slide(levels=[{sizes}] {SIZE_ORDER}, channels={len(self.optical_paths)}, "
            f"planes={len(self.focal_planes)}, associated={sorted(self.associated)})"
        )


def images_from_index(
    doc: Mapping[str, Any],
    source: str,
    *,
    relocate: Mapping[str, str] | None = None,
    verify: bool = True,
    storage_options: StorageOptions = None,
) -> list[TiledImage]:
    """The instances of a slide index (see
    [`Slide.to_index`][dicom_dask.images.slide.Slide.to_index]), bound to their files
    (``verify``: one metadata request per file; ``relocate``: as in ``open_slide``)."""
    instances = entries(doc, SLIDE_KEY, "instances", SLIDE_FORMAT, source)
    try:
        infos = [inst["index"] for inst in instances]
    except (KeyError, TypeError) as exc:
        raise NoImagesError(f"{source}: not a dicom_dask slide index ({exc!r})") from exc
    indexes = open_indexes(
        infos, relocate=relocate, verify=verify, storage_options=storage_options, source=source
    )
    images = []
    for inst, index in zip(instances, indexes, strict=True):
        positions = inst.get("positions")
        images.append(
            tiled_image(
                index, positions=None if positions is None else SlidePositions.from_dict(positions)
            )
        )
    return images


def _discover(source: Any, *, storage_options: StorageOptions) -> list[TiledImage]:
    if is_dicomweb(source):
        indexes, discovered = index_dicomweb(source, storage_options=storage_options), True
    else:
        listing = list_sources(source, storage_options=storage_options)
        discovered = listing.discovered
        indexes = index_many(
            listing.urls,
            storage_options=storage_options,
            skip_non_images=discovered,
            infos=listing.infos,
            readers=listing.readers,
        )
    images = []
    for index in indexes:
        if is_tiled(index.header.dataset) or index.header.description.number_of_frames == 1:
            if discovered and not is_tiled(index.header.dataset):
                continue
            images.append(tiled_image(index))
        elif not discovered:
            raise LayoutError(
                f"{index.url}: not a tiled image (no Total Pixel Matrix, several frames)"
            )
    return images


def list_slides(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    storage_options: StorageOptions = None,
) -> list[Entry]:
    """Describe the slides in a folder, glob or list.

    Each entry has the slide's series, container, Frame(s) of Reference, optical
    paths and instances, and ``differs_by``: the fields (Frame of Reference,
    Container Identifier, Series, optical paths) whose values set the slides of
    ``source`` apart. ``merged_frames_of_reference`` lists the Frames of Reference of
    levels opened as one slide because their geometry agrees;
    ``kept_apart_because`` says why a group of the same series and container was not.
    ``kind`` says what the entry is (``"slide"``, ``"segmentation"``, or ``"label"`` /
    ``"overview"`` / ``"thumbnail"`` for an associated image with no pyramid to join: see
    `KINDS`) and ``urls`` lists its files; each entry
    opens with [`open_entry`][dicom_dask.images.cohort.open_entry] without reading a
    header again.
    """
    return describe_slides(_discover(source, storage_options=storage_options))


def instances_entry(images: Sequence[TiledImage], *, keep_identifiers: bool = False) -> SlideEntry:
    """The ``dicom_dask_slide`` entry of a slide index: each instance's index and parsed
    positions (see [`Slide.to_index`][dicom_dask.images.slide.Slide.to_index])."""
    return slide_entry(
        [
            {
                "index": index_to_dict(
                    im.index, {}, per_frame=im.positions is None, keep_identifiers=keep_identifiers
                )["dicom_dask"],
                "positions": None if im.positions is None else im.positions.to_dict(),
            }
            for im in images
        ]
    )


def open_slide(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    storage_options: StorageOptions = None,
    select: int | str | None = None,
    index: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    raw: bool = False,
    backend: str = "auto",
    fill_value: int | float = 0,
    chunk_edge: int = 2048,
    relocate: Mapping[str, str] | None = None,
    verify: bool = True,
) -> Slide:
    """Open a whole-slide image lazily: headers and offset tables only.

    Parameters
    ----------
    source : str, path, or list of them
        One instance, a folder (searched recursively), a glob, or a list; local paths
        or fsspec URLs (``s3://``, ``gs://``, ``https://``...).
    storage_options : mapping or callable, optional
        fsspec options; they travel with the arrays to dask workers. Or a picklable
        filesystem factory, called where the reads happen (credentials stay out of
        pickled graphs).
    select : int or str, optional
        Which slide when ``source`` holds several: an index into
        [`list_slides`][dicom_dask.images.slide.list_slides], a Series Instance UID, a
        Container Identifier or a Frame of Reference UID.
    index : path, URL or mapping, optional
        A sidecar written by [`Slide.save_index`][dicom_dask.images.slide.Slide.save_index]:
        no header is read. Each file's size and ETag / generation / mtime are compared
        with the index (one metadata request per file, concurrently), else
        [`StaleIndexError`][dicom_dask.errors.StaleIndexError].
    raw : bool
        Keep YBR colour data as stored (default: RGB, as pydicom's ``pixel_array``).
    backend : str
        Decoder (``"auto"``, ``"pydicom"``, ``"imagecodecs"``), see
        [`open_frames`][dicom_dask.images.instance.open_frames].
    fill_value : int or float
        Value of pixels in tiles absent from a TILED_SPARSE instance.
    chunk_edge : int
        Target edge of a dask chunk in pixels (rounded to whole tiles).
    relocate : mapping, optional
        With ``index``: read copies of the indexed files, ``{recorded URL prefix: prefix
        of the copy}`` (``{"s3://bucket/slides/": "/data/slides/"}``); only the sizes of
        relocated files are compared.
    verify : bool
        With ``index``: compare each file with the index (``False``: no request until
        pixels are read).

    Returns
    -------
    Slide
    """
    if index is not None:
        doc = load_index(index, storage_options=storage_options)
        images = images_from_index(
            doc,
            redact(os.fspath(index)[:200]) if not isinstance(index, Mapping) else "index",
            relocate=relocate,
            verify=verify,
            storage_options=storage_options,
        )
        where = "index"
    elif source is None:
        raise NoImagesError("open_slide needs a source or an index")
    else:
        images = _discover(source, storage_options=storage_options)
        where = (
            redact(os.fspath(source))
            if isinstance(source, str | os.PathLike)
            else f"{len(source)} files"
        )
    group = _select(group_slides(images), select, where)
    return slide_from_images(
        group,
        where=where,
        raw=raw,
        backend=backend,
        fill_value=fill_value,
        storage_options=storage_options,
        chunk_edge=chunk_edge,
    )


def slide_from_images(images: Sequence[TiledImage], *, where: str, **options: Any) -> Slide:
    """The [`Slide`][dicom_dask.images.slide.Slide] of the instances of one slide (as
    grouped by [`describe_slides`][dicom_dask.images.slides_grouping.describe_slides]); ``options``
    are those of [`merge_level`][dicom_dask.images.level.merge_level] (``raw``,
    ``backend``, ``fill_value``, ``storage_options``, ``chunk_edge``)."""
    volumes: dict[tuple[int, int], list[TiledImage]] = {}
    associated: dict[str, Level] = {}
    for im in images:
        if im.image_type in ASSOCIATED:
            associated.setdefault(im.image_type.lower(), merge_level([im], **options))
        else:
            volumes.setdefault(im.matrix_shape, []).append(im)
    if not volumes:
        raise NoImagesError(
            f"{where}: the slide has no VOLUME instance, only {sorted(associated)}; "
            "open_tiled() opens one instance of any kind"
        )

    def order(shape: tuple[int, int]) -> tuple[float, int]:
        spacing = volumes[shape][0].pixel_spacing
        return (spacing[1] if spacing else 0.0, -shape[1])

    pyramid = tuple(merge_level(volumes[shape], **options) for shape in sorted(volumes, key=order))
    return Slide(
        pyramid=pyramid, associated=associated, storage_options=options.get("storage_options")
    )


def open_tiled(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    raw: bool = False,
    backend: str = "auto",
    fill_value: int | float = 0,
    chunk_edge: int = 2048,
) -> Level:
    """Open the total pixel matrix of one tiled instance (any Image Type) lazily.

    ``.array`` is ``(rows, columns[, samples])`` for one optical path (or segment)
    and focal plane, ``(c, z, rows, columns[, samples])`` otherwise; see
    [`open_slide`][dicom_dask.images.slide.open_slide] for the parameters.
    """
    index = index_many([canonical_url(url)], storage_options=storage_options)[0]  # read_once
    return merge_level(
        [tiled_image(index)],
        raw=raw,
        backend=backend,
        fill_value=fill_value,
        storage_options=storage_options,
        chunk_edge=chunk_edge,
    )
