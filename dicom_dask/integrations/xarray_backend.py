"""xarray backend: ``xr.open_dataset(path, engine="dicom")`` and ``xr.open_datatree``.

It only builds and delegates: a volume (folder, glob, list, enhanced file) becomes
[`Volume.to_xarray`][dicom_dask.images.volume.Volume.to_xarray], a slide becomes one dataset per
pyramid level with coordinates in millimetres, any other file its frames. Arrays stay lazy (dask).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendEntrypoint

from dicom_dask.errors import DicomDaskError

__all__ = ["DicomBackendEntrypoint"]

_SUFFIXES = (".dcm", ".dicom", ".dic")


def _header_json(ds: Any) -> str:
    import json

    return json.dumps(ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=None))


def _level_dataset(level: Any) -> xr.Dataset:
    """One slide level with x/y (and z, c) coordinates in mm along its axes."""
    array = level.array
    affine = level.affine if level.pixel_spacing else np.eye(4)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / np.where(spacing == 0, 1, spacing)
    origin = affine[:3, 3]
    rows, cols = level.matrix_shape
    coords: dict[str, Any] = {
        "y": float(origin @ direction[:, 0]) + np.arange(rows) * spacing[0],
        "x": float(origin @ direction[:, 1]) + np.arange(cols) * spacing[1],
    }
    dims = ["y", "x"]
    if not level.squeezed:
        dims = ["c", "z", "y", "x"]
        coords["c"] = [ch.identifier for ch in level.channels]
        coords["z"] = np.asarray(level.focal_planes) / 1000.0
    if array.ndim > len(dims):
        dims.append("sample")
    attrs = {
        "affine": affine.tolist(),
        "units": "mm",
        "image_type": level.image_type,
        "urls": list(level.urls),
        "photometric_interpretation": level.photometric_interpretation,
        "dicom_json": _header_json(level.image.dataset),
    }
    return xr.Dataset({"image": xr.DataArray(array, dims=dims, coords=coords, attrs=attrs)})


class DicomBackendEntrypoint(BackendEntrypoint):
    """Open DICOM images, volumes and slides lazily with ``engine="dicom"``."""

    description = "Lazy DICOM volumes, slides and frames through dicom_dask (dask arrays)"
    url = "https://github.com/dicom-dask/dicom_dask"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "kind", "storage_options")
    supports_groups = True

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        # docstring inherited
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        text = os.fspath(filename_or_obj)
        return text.lower().endswith(_SUFFIXES) or os.path.isdir(text)

    def _kind(self, source: Any, storage_options: Any) -> str:
        from dicom_dask.images.sources import classify, is_collection

        if is_collection(source):
            return "volume"
        kind, index = classify(source, storage_options=storage_options)
        ds = index.header.dataset
        if kind == "slide":
            return "slide"
        if "PerFrameFunctionalGroupsSequence" in ds or "ImagePositionPatient" in ds:
            return "volume"
        return "frames"

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        kind: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> xr.Dataset:
        # docstring inherited
        from dicom_dask.images.instance import open_frames
        from dicom_dask.images.slide import open_slide
        from dicom_dask.images.volume import open_volume

        kind = kind or self._kind(filename_or_obj, storage_options)
        if kind == "volume":
            volume = open_volume(filename_or_obj, storage_options=storage_options)
            data = volume.to_xarray()
            data.attrs["dicom_json"] = _header_json(volume.sources[0][0]) if volume.sources else ""
            out = xr.Dataset({"image": data})
        elif kind == "slide":
            slide = open_slide(filename_or_obj, storage_options=storage_options)
            out = _level_dataset(slide.pyramid[0])
            out.attrs["downsamples"] = slide.downsamples
        elif kind == "frames":
            frames = open_frames(filename_or_obj, storage_options=storage_options)
            dims = ["frame", "row", "column", "sample"][: len(frames.shape)]
            data = xr.DataArray(frames.array, dims=dims)
            data.attrs["dicom_json"] = _header_json(frames.header)
            out = xr.Dataset({"image": data})
        else:
            raise DicomDaskError(f"kind must be 'volume', 'slide' or 'frames', got {kind!r}")
        if drop_variables:
            out = out.drop_vars(drop_variables, errors="ignore")
        return out

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        storage_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> xr.DataTree:
        # docstring inherited
        return xr.DataTree.from_dict(
            self.open_groups_as_dict(
                filename_or_obj, drop_variables=drop_variables, storage_options=storage_options
            )
        )

    def open_groups_as_dict(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        storage_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, xr.Dataset]:
        """A slide's pyramid: ``/level0``, ``/level1``... and its associated images."""
        from dicom_dask.images.slide import open_slide

        slide = open_slide(filename_or_obj, storage_options=storage_options)
        groups: dict[str, xr.Dataset] = {
            "/": xr.Dataset(attrs={"downsamples": slide.downsamples, "units": "mm"})
        }
        for i, level in enumerate(slide.pyramid):
            groups[f"/level{i}"] = _level_dataset(level)
        for name, level in slide.associated.items():
            groups[f"/{name}"] = _level_dataset(level)
        if drop_variables:
            groups = {k: v.drop_vars(drop_variables, errors="ignore") for k, v in groups.items()}
        return groups
