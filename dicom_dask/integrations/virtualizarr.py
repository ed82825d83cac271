"""A DICOM parser for VirtualiZarr 2: frames, slide pyramids and volumes as virtual variables.

```python
import virtualizarr as vz
from obspec_utils.registry import ObjectStoreRegistry
from obstore.store import LocalStore
from dicom_dask.virtualizarr import DicomParser

registry = ObjectStoreRegistry({"file://": LocalStore()})
vds = vz.open_virtual_dataset("file:///data/ct/", parser=DicomParser(), registry=registry)
vds.vz.to_kerchunk("ct.json", format="json")       # or "parquet", or vds.vz.to_icechunk(store)
```

Every variable's chunks are byte ranges of the DICOM files, decoded by our codec. Its
metadata use the bytes-to-bytes form of the codec chain,
[`DicomChainBytesCodec`][dicom_dask.chunks.numcodec.DicomChainBytesCodec]
(``numcodecs.dicom_dask.frame``, after zarr's ``bytes``), because VirtualiZarr's kerchunk
writer keeps only bytes-to-bytes codecs; plain native pixels keep zarr's ``bytes`` codec
alone, which any zarr reader decodes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from dicom_dask.chunks.manifest import INLINE, MISSING, ChunkManifest
from dicom_dask.chunks.numcodec import V3_NAME, chain_filter
from dicom_dask.enums import FrameEncoding, Kind
from dicom_dask.errors import ManifestError
from dicom_dask.integrations.kerchunk import VirtualArray, open_store, virtual_arrays

__all__ = ["DicomParser", "virtual_codecs"]


def virtual_codecs(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The v3 codec chain of an array for VirtualiZarr: ``bytes`` alone for plain native
    pixels, else ``bytes`` then the bytes-to-bytes ``numcodecs.dicom_dask.frame``."""
    codecs = list(metadata["codecs"])
    if len(codecs) == 1 and codecs[0]["name"] == "bytes":
        return codecs
    dtype = np.dtype(metadata["data_type"])
    chunks = tuple(metadata["chunk_grid"]["configuration"]["chunk_shape"])
    config = chain_filter(
        codecs,
        chunks,
        dtype.name,
        shape=metadata["shape"],
        fill_value=metadata.get("fill_value", 0),
    )
    config.pop("id")
    raw: dict[str, Any] = {"name": "bytes"}
    if dtype.itemsize > 1:
        raw["configuration"] = {"endian": "little"}
    return [raw, {"name": V3_NAME, "configuration": config}]


def _uri(url: str) -> str:
    """The reference URL of a chunk's file: remote URLs as they are; a local file as the
    ``file://`` URL of its real path (symlinks resolved, as ``Path.resolve()`` gives), so
    that one file has one URL whichever link it was opened through, and an Icechunk
    virtual chunk container for ``Path(folder).resolve().as_uri()`` covers it."""
    if "::" in url:
        raise ManifestError(
            f"{url}: chained fsspec URLs cannot be virtual references; use the target URL"
        )
    protocol, _, rest = url.partition("://")
    if rest and protocol not in ("file", "local"):
        return url
    return Path(unquote(rest) if rest else url).resolve().as_uri()


def _chunk_manifest(manifest: ChunkManifest, where: str) -> Any:
    from virtualizarr.manifests import ChunkManifest as VirtualManifest

    index = manifest.url_index
    if (index == INLINE).any():
        raise ManifestError(
            f"{where}: holds inline chunks (deflated data, which cannot be range-read); "
            "VirtualiZarr manifests hold byte ranges only"
        )
    if (manifest.encoding == FrameEncoding.WADO.value).any():
        raise ManifestError(f"{where}: frames served by DICOMweb have no byte ranges to reference")
    urls = np.array([_uri(u) for u in manifest.urls] + [""], dtype=np.dtypes.StringDType())
    paths = urls[np.where(index == MISSING, len(manifest.urls), index)]
    offsets = np.where(index == MISSING, 0, manifest.offsets).astype(np.uint64)
    lengths = np.where(index == MISSING, 0, manifest.lengths).astype(np.uint64)
    return VirtualManifest.from_arrays(
        paths=paths,  # type: ignore[arg-type, unused-ignore]  # virtualizarr absent: Any
        offsets=offsets,
        lengths=lengths,
        validate_paths=False,
    )


def manifest_array(array: VirtualArray, where: str) -> Any:
    """A VirtualiZarr ``ManifestArray`` of one of our arrays."""
    from virtualizarr.manifests import ManifestArray
    from zarr.core.metadata.v3 import ArrayV3Metadata

    doc = dict(array.metadata)
    doc["codecs"] = virtual_codecs(doc)
    doc.pop("zarr_format", None)
    doc.pop("node_type", None)
    metadata = ArrayV3Metadata.from_dict({"zarr_format": 3, "node_type": "array", **doc})
    return ManifestArray(metadata=metadata, chunkmanifest=_chunk_manifest(array.manifest, where))


@dataclass(frozen=True)
class DicomParser:
    """VirtualiZarr 2 parser (``parser(url, registry) -> ManifestStore``) for DICOM.

    Parameters
    ----------
    kind : {"frames", "slide", "volume"}, optional
        What ``url`` is read as (default: guessed, as
        [`to_kerchunk`][dicom_dask.integrations.kerchunk.to_kerchunk] does): a file's
        ``frames``; a ``slide`` pyramid, one group per level (``"0"``, ``"1"``...)
        holding ``image``, for ``open_virtual_datatree`` (or pick one with ``level``);
        a series ``volume``.
    level : int, optional
        For a slide: put only this level's ``image`` in the root group, so that
        ``open_virtual_dataset`` gives it.
    storage_options : mapping, optional
        fsspec options dicom_dask reads headers with (the registry's object stores
        read the chunks).
    keep_identifiers : bool
        Keep the instance UIDs and the slide's Container Identifier in the variables'
        attributes (by default replaced: what VirtualiZarr writes, kerchunk JSON or
        Parquet or Icechunk, carries no patient data; see ``docs/cloud.md``).

    Notes
    -----
    ``url`` is a file, a folder or a glob, as ``file:///...``, a local path or an
    fsspec URL; chunk paths are absolute URLs (for local files ``file://`` URLs of the
    real path, symlinks resolved), so the registry needs a store for their prefix, and
    an Icechunk virtual chunk container for local files is
    ``Path(folder).resolve().as_uri() + "/"``.
    """

    kind: str | None = None
    level: int | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    keep_identifiers: bool = False

    def __post_init__(self) -> None:
        if self.kind is not None:
            Kind.coerce(self.kind)  # InvalidOptionError (a ValueError) names the values
        if self.level is not None and self.kind not in (None, "slide"):
            raise ValueError("level= applies to slides only")

    def __call__(self, url: str, registry: Any) -> Any:
        """Parse ``url`` into a VirtualiZarr ``ManifestStore`` that reads through ``registry``."""
        from virtualizarr.manifests import ManifestGroup, ManifestStore

        source: str | os.PathLike[str] = url
        if url.startswith("file://"):
            source = unquote(url.removeprefix("file://"))
        kind = "slide" if self.level is not None else self.kind
        kind, store = open_store(source, kind=kind, storage_options=dict(self.storage_options))
        attrs, arrays = virtual_arrays(store, kind=kind, keep_identifiers=self.keep_identifiers)
        if self.level is not None:
            chosen = [a for a in arrays if a.group == str(self.level)]
            if not chosen:
                raise ValueError(
                    f"{url}: the slide has {len(arrays)} levels, no level {self.level}"
                )
            arrays = [VirtualArray("", chosen[0].name, chosen[0].metadata, chosen[0].manifest)]
        groups: dict[str, dict[str, Any]] = {}
        for array in arrays:
            groups.setdefault(array.group, {})[array.name] = manifest_array(
                array, f"{url} {array.path}"
            )
        root = ManifestGroup(
            arrays=groups.pop("", {}),
            groups={name: ManifestGroup(arrays=members) for name, members in groups.items()},
            attributes=attrs,
        )
        return ManifestStore(group=root, registry=registry)
