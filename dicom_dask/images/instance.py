"""The frames of one DICOM instance as zarr and dask arrays.

[`open_frames`][dicom_dask.images.instance.open_frames] gives a
[`Frames`][dicom_dask.images.instance.Frames]; [`open_store`][dicom_dask.images.instance.open_store]
its read-only zarr store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np

from dicom_dask.chunks.manifest import INLINE, ChunkManifest
from dicom_dask.chunks.metadata import array_metadata, frame_codecs, output_photometric
from dicom_dask.chunks.references import reference_set
from dicom_dask.chunks.sidecar import (
    index_to_dict,
    load_index,
    open_index,
    save_index,
    sources_entry,
)
from dicom_dask.chunks.store import DicomStore
from dicom_dask.errors import AmbiguousSourceError, NoImagesError
from dicom_dask.frames import FrameIndex, index_frames, versions_of
from dicom_dask.frames.deidentify import deidentify_attributes
from dicom_dask.frames.dicomweb import index_location, is_dicomweb, location
from dicom_dask.frames.storage import redact
from dicom_dask.images.transforms import FrameTransformer, TransformOptions
from dicom_dask.types import ReferenceSet, StorageOptions

if TYPE_CHECKING:
    import dask.array
    import zarr
    from pydicom.dataset import Dataset

__all__ = ["Frames", "open_frames", "open_store"]


def _manifest(index: FrameIndex, ndim: int) -> ChunkManifest:
    ranges = index.ranges
    n = len(ranges)
    grid = (n,) + (1,) * (ndim - 1)
    if index.header.inline_pixel_data is not None:
        value = index.header.inline_pixel_data
        inline = [
            value[int(o) : int(o) + int(ln)]
            for o, ln in zip(ranges.offsets, ranges.lengths, strict=True)
        ]
        return ChunkManifest(
            (),
            np.full(grid, INLINE, dtype=np.int32),
            np.arange(n, dtype=np.uint64).reshape(grid),
            np.array([len(b) for b in inline], dtype=np.uint64).reshape(grid),
            np.zeros(grid, dtype=np.uint8),
            inline,
        )
    return ChunkManifest(
        (index.url,),
        np.zeros(grid, dtype=np.int32),
        ranges.offsets.reshape(grid),
        ranges.lengths.reshape(grid),
        ranges.encoding.reshape(grid),
    )


def _frames_document(index: FrameIndex, *, raw: bool, backend: str) -> dict[str, Any]:
    header = index.header
    desc = header.description
    ds = header.dataset
    k = index.ranges.frames_per_chunk
    shape = (desc.number_of_frames, *desc.frame_shape)
    chunk = (k, *desc.frame_shape)
    codecs = frame_codecs(header, frames_per_chunk=k, as_rgb=not raw, backend=backend)
    attributes = {
        "dicom_dask": {
            "url": header.url,
            "transfer_syntax": str(header.transfer_syntax),
            "sop_class_uid": str(ds.get("SOPClassUID", "")),
            "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
            "photometric_interpretation": output_photometric(
                desc, as_rgb=not raw, tsyntax=str(header.transfer_syntax)
            ),
            "stored_photometric_interpretation": desc.photometric_interpretation,
            "frame_index": index.ranges.method,
        }
    }
    names = ("frame", "row", "column") + (("sample",) if desc.samples_per_pixel > 1 else ())
    return array_metadata(
        shape=shape,
        chunk_shape=chunk,
        dtype=desc.dtype,
        codecs=codecs,
        dimension_names=names,
        attributes=attributes,
    )


def _build_index(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions,
    filesystem: fsspec.AbstractFileSystem | None,
    index: str | os.PathLike[str] | Mapping[str, Any] | FrameIndex | None,
    relocate: bool = False,
    verify: bool = True,
) -> FrameIndex:
    if isinstance(index, FrameIndex):
        return index
    if index is not None:
        return open_index(
            load_index(index, storage_options=storage_options),
            url,
            relocate=relocate,
            verify=verify,
            storage_options=storage_options,
            source="index" if isinstance(index, Mapping) else redact(os.fspath(index)[:200]),
        )
    if is_dicomweb(url):
        found = index_location(url, storage_options=storage_options)  # type: ignore[arg-type]
        if len(found) != 1:
            raise (AmbiguousSourceError if found else NoImagesError)(
                f"{location(url).url()}: holds {len(found)} images; open_frames reads one "
                "instance (…/instances/<uid>)"
            )
        return found[0]
    return index_frames(url, storage_options=storage_options, filesystem=filesystem)


def open_store(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    raw: bool = False,
    backend: str = "auto",
    index: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> DicomStore:
    """Open one DICOM instance as a read-only zarr v3 store of its frames.

    The store's root is an array of shape ``(frames, rows, columns[, samples])``,
    one frame per chunk (``k`` frames for unaligned 1-bit data). See
    [`open_frames`][dicom_dask.images.instance.open_frames] for the parameters.
    """
    return open_frames(
        url, storage_options=storage_options, raw=raw, backend=backend, index=index
    ).store


@dataclass(frozen=True, eq=False)
class Frames:
    """The frames of one DICOM instance, lazily.

    Attributes
    ----------
    url : str
        Canonical URL of the file.
    header : pydicom.dataset.Dataset
        The dataset without its pixel data.
    manifest : ChunkManifest
        Where each chunk's bytes are.
    store : DicomStore
        The zarr v3 store serving the frames array at its root.
    """

    index: FrameIndex
    store: DicomStore
    raw: bool
    #: Pixel transforms applied to [`array`][dicom_dask.images.instance.Frames.array] (see
    #: [`transformed`][dicom_dask.images.instance.Frames.transformed]).
    transform: FrameTransformer | None = None

    @property
    def url(self) -> str:
        """Canonical URL of the file."""
        return self.index.url

    @property
    def header(self) -> Dataset:
        """The dataset without pixel data."""
        return self.index.header.dataset

    @property
    def manifest(self) -> ChunkManifest:
        """The chunk manifest of the frames array."""
        return self.store.manifests[""]

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """The array's ``zarr.json`` document."""
        return dict(json.loads(self.store.documents["zarr.json"]))

    @property
    def shape(self) -> tuple[int, ...]:
        """``(frames, rows, columns[, samples])``."""
        return tuple(self.metadata["shape"])

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the decoded frames."""
        return np.dtype(self.metadata["data_type"])

    @property
    def codecs(self) -> list[dict[str, Any]]:
        """The zarr codec chain (records which backend decodes)."""
        return list(self.metadata["codecs"])

    @cached_property
    def zarr(self) -> zarr.Array:
        """The frames as a `zarr.Array` over [`store`][dicom_dask.images.instance.Frames] (opened
        on first use, then kept).

        Plain zarr reads only the chunks a selection touches. The array is opened with
        dicom_dask's codec pipeline, which reads, decodes and copies local frames in
        worker threads (see [`zarr_settings`][dicom_dask.chunks.pipeline.zarr_settings]),
        unless the zarr configuration names another pipeline.
        """
        from dicom_dask.chunks.pipeline import open_array

        return open_array(self.store)

    def reader(self) -> Any:
        """The array-like the dask graph reads through (manifest + decoder)."""
        from dicom_dask.chunks.reader import FrameLabel, ManifestArray

        chunk = tuple(self.metadata["chunk_grid"]["configuration"]["chunk_shape"])
        return ManifestArray(
            self.store,
            "",
            shape=self.shape,
            chunk_shape=chunk,
            dtype=self.dtype,
            codecs=self.codecs,
            label=FrameLabel(chunk[0]),
        )

    @cached_property
    def array(self) -> dask.array.Array:
        """The frames as a dask array, one frame per chunk."""
        return self.to_dask()

    def to_dask(self, *, frames_per_chunk: int = 1) -> dask.array.Array:
        """A dask array of the frames with ``frames_per_chunk`` frames per dask chunk."""
        from dicom_dask.images.lazy import fused_transformed_dask, reader_dask

        if frames_per_chunk < 1:
            raise ValueError(f"frames_per_chunk must be >= 1, got {frames_per_chunk}")
        reader = self.reader()
        chunks = (frames_per_chunk, *self.shape[1:])
        token = _token(self, frames_per_chunk)
        array = reader_dask(reader, chunks, f"dicom-frames-{token}")
        if self.transform is None:
            return array
        roles = "f" + "yxs"[: len(self.shape) - 1]
        options = self.transform.options.to_dict()
        name = f"dicom-frames-transformed-{_tokenize(token, options)}"
        # transformed while read: slicing the transformed frames reads only what it selects
        return fused_transformed_dask(reader, array, self.transform, roles, name)[0]

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
    ) -> Frames:
        """The same frames with the pixel transform chain applied lazily, per frame.

        The switches and their defaults are highdicom's ``Image.get_frames``: ``True``
        applies a transform and raises if it is absent, ``False`` skips it, ``None``
        applies it if present. Per-frame parameters (Pixel Value Transformation and
        Frame VOI LUT functional groups) reach their own frames. What was applied is
        in ``.transform.applied`` and ``.transform.options``.
        """
        options = TransformOptions.from_arguments(locals())
        n = self.shape[0]
        frames = np.stack([np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64)], axis=-1)
        transformer = FrameTransformer([self.header], frames, options, names=[self.url])
        return replace(self, transform=transformer)

    def to_index(self, *, keep_identifiers: bool = False) -> ReferenceSet:
        """The index sidecar document (kerchunk references + parsed header; without
        ``keep_identifiers``, the header keeps only what reading needs of the identifying
        attributes: see ``docs/cloud.md``, "Patient data")."""
        refs: dict[str, Any] = {"zarr.json": json.dumps(self.metadata)}
        refs.update(self.manifest.to_references())
        return index_to_dict(self.index, refs, keep_identifiers=keep_identifiers)

    def to_kerchunk(self, *, keep_identifiers: bool = False) -> ReferenceSet:
        """Kerchunk/fsspec references of the frames array (``{"version": 1, ...}``); the
        SOP Instance UID in its attributes is replaced unless ``keep_identifiers``."""
        metadata = dict(self.metadata)
        if not keep_identifiers:
            metadata["attributes"] = deidentify_attributes(metadata.get("attributes") or {})
        refs: dict[str, Any] = {"zarr.json": json.dumps(metadata)}
        refs.update(self.manifest.to_references())
        return reference_set(refs, sources=sources_entry([self.index]))

    def save_index(
        self,
        path: str | os.PathLike[str],
        *,
        storage_options: StorageOptions = None,
        keep_identifiers: bool = False,
    ) -> None:
        """Save the index sidecar so that the next open reads no header or table (a
        cache of the header: see [`to_index`][dicom_dask.images.instance.Frames.to_index]
        for ``keep_identifiers``)."""
        doc = self.to_index(keep_identifiers=keep_identifiers)
        save_index(doc, path, storage_options=storage_options)

    def __repr__(self) -> str:
        return (
            f"Frames({redact(self.url)!r}, shape={self.shape}, dtype={self.dtype}, "
            f"transfer_syntax={self.index.header.transfer_syntax.name!r})"
        )


def _tokenize(*args: Any) -> str:
    from dask.base import tokenize

    return tokenize(*args)


def _token(frames: Frames, frames_per_chunk: int) -> str:
    from dask.base import tokenize

    return tokenize(
        frames.url, frames.metadata, frames.manifest.offsets.tobytes(), frames_per_chunk
    )


def open_frames(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions = None,
    raw: bool = False,
    backend: str = "auto",
    index: str | os.PathLike[str] | Mapping[str, Any] | FrameIndex | None = None,
    filesystem: fsspec.AbstractFileSystem | None = None,
    relocate: bool = False,
    verify: bool = True,
) -> Frames:
    """Open the frames of one DICOM instance lazily.

    Only the header (and, for encapsulated data without an offset table, the item
    headers) is read; pixel data are read when a computation touches them.

    Parameters
    ----------
    url : str or path-like
        Local path or fsspec URL (``s3://``, ``gs://``, ``https://``, ``simplecache::...``).
    storage_options : mapping or callable, optional
        fsspec options for the URL; they travel with the store to dask workers. Or a
        picklable zero-argument filesystem factory (``functools.partial(s3fs.S3FileSystem,
        endpoint_url=...)``), called where the reads happen, so that credentials found
        there never enter a pickled graph.
    raw : bool
        Keep the stored colour space (no YBR -> RGB conversion). The default gives
        pydicom's ``pixel_array`` result.
    backend : str
        Decoder: ``"auto"`` (fastest installed), ``"pydicom"`` (pydicom's own
        plugin, identical to ``pixel_array``), or ``"imagecodecs"``.
    index : path, URL, mapping or FrameIndex, optional
        A sidecar written by [`Frames.save_index`][dicom_dask.images.instance.Frames.save_index]
        (or an index already built): no header is read. The index is bound to its file:
        ``url`` must be the URL it records, and the file's size, ETag / generation /
        mtime must match it (one metadata request), else
        [`StaleIndexError`][dicom_dask.errors.StaleIndexError].
    relocate : bool
        With ``index``: read the copy of the indexed file at ``url`` (another path or
        bucket); only its size is compared with the index.
    verify : bool
        With ``index``: compare the file's size and identity with the index (one
        metadata request). ``False`` reads nothing until pixels are (the index must then
        be trusted to describe the file).
    filesystem : fsspec.AbstractFileSystem, optional
        A ready filesystem for ``url`` (header reads only; chunk reads use
        ``storage_options``).

    Returns
    -------
    Frames
        With ``.array`` (dask), ``.zarr``, ``.header``, ``.manifest`` and ``.store``.
    """
    frame_index = _build_index(
        url,
        storage_options=storage_options,
        filesystem=filesystem,
        index=index,
        relocate=relocate,
        verify=verify,
    )
    desc = frame_index.header.description
    ndim = 4 if desc.samples_per_pixel > 1 else 3
    document = _frames_document(frame_index, raw=raw, backend=backend)
    store = DicomStore(
        {"": _manifest(frame_index, ndim)},
        {"zarr.json": document},
        storage_options=storage_options,
        read_only=True,
        versions=versions_of([frame_index]),
    )
    return Frames(index=frame_index, store=store, raw=raw)
