"""``to_dicom_series``: a volume opened with ``open_volume`` rewritten as a single-frame series.

Each slice keeps its source header (patient, study, Frame of Reference, position,
orientation, rescale...) under a new series and new instance UIDs, with its pixels
re-encoded in the requested transfer syntax. One dask task writes the files of one
block of slices, so a cluster's workers encode and write in parallel.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from dicom_dask.errors import LayoutError
from dicom_dask.frames._io import StorageOptions, resolve_fs
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.writers.dataset import new_uid
from dicom_dask.integrations.writers.encode import Encoder, transfer_syntax_uid
from dicom_dask.integrations.writers.stream import is_local

__all__ = ["to_dicom_series"]


def _slice_dataset(
    header: Dataset, pixels: np.ndarray, encoder: Encoder, series_uid: str, number: int
) -> Dataset:
    ds = copy.deepcopy(header)
    for keyword in ("PixelData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    sop = _uid.UID(new_uid())
    ts = _uid.UID(encoder.transfer_syntax)
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop
    ds.file_meta = copy.deepcopy(header.file_meta)
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ts
    ds.InstanceNumber = number
    if encoder.samples == 3:
        ds.PhotometricInterpretation = encoder.photometric_interpretation
        ds.PlanarConfiguration = 0
    frame = encoder(pixels)
    if ts.is_encapsulated:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = frame + (b"\x00" if len(frame) % 2 else b"")
        ds["PixelData"].VR = "OW" if pixels.dtype.itemsize > 1 else "OB"
    if encoder.lossy_method:
        ds.LossyImageCompression = "01"
        methods = list(np.atleast_1d(ds.get("LossyImageCompressionMethod", [])))
        ds.LossyImageCompressionMethod = [*map(str, methods), encoder.lossy_method]
        if "LossyImageCompressionRatio" in ds:
            del ds.LossyImageCompressionRatio  # the methods and ratios would disagree
    return ds


def _write_block(
    block: np.ndarray,
    headers: Sequence[Dataset],
    names: Sequence[str],
    numbers: Sequence[int],
    encoder: Encoder,
    series_uid: str,
    storage_options: StorageOptions,
) -> int:
    for k, (header, name, number) in enumerate(zip(headers, names, numbers, strict=True)):
        ds = _slice_dataset(header, block[k], encoder, series_uid, number)
        if is_local(name):
            ds.save_as(name, enforce_file_format=True)
        else:
            fs, path = resolve_fs(name, storage_options)
            with fs.open(path, "wb") as fh:
                ds.save_as(fh, enforce_file_format=True)
    return len(names)


def to_dicom_series(
    volume: Volume,
    dest: str | os.PathLike[str],
    *,
    transfer_syntax: str = "explicit",
    quality: int = 90,
    storage_options: StorageOptions = None,
    progress: bool = True,
) -> list[str]:
    """Rewrite the slices of ``volume`` as a new single-frame series in the folder ``dest``.

    Parameters
    ----------
    volume : Volume
        Opened with [`open_volume`][dicom_dask.images.volume.open_volume] from single-frame
        files (its stored values, not a transformed or derived volume), without channel
        dimensions.
    dest : str or path
        A folder, local or an fsspec URL; files are ``slice-0001.dcm``... in volume order.
    transfer_syntax : str
        As [`to_dicom_slide`][dicom_dask.integrations.writers.slide.to_dicom_slide].

    Returns
    -------
    list of str
        The written files, in volume order.
    """
    import dask

    if volume.sources is None or volume.channels:
        raise LayoutError(
            "to_dicom_series rewrites a volume opened with open_volume (stored values, "
            "not transformed or derived, no channel dimensions)"
        )
    datasets, frames, _ = volume.sources
    n = volume.spatial_shape[0]
    index = np.asarray(frames).reshape(n, -1)
    if (index[:, 0] < 0).any():
        raise LayoutError("the volume has missing slices")
    headers = [datasets[int(i)] for i in index[:, 0]]
    if len({str(h.SOPInstanceUID) for h in headers}) != n:
        raise LayoutError("to_dicom_series needs one single-frame file per slice")
    array = volume.array
    samples = array.shape[3] if array.ndim == 4 else 1
    encoder = Encoder(transfer_syntax_uid(transfer_syntax), samples, str(array.dtype), quality)
    text = os.fspath(dest)
    if is_local(text):
        os.makedirs(text, exist_ok=True)
        names = [os.path.join(text, f"slice-{k + 1:04d}.dcm") for k in range(n)]
    else:
        fs, root = resolve_fs(text, storage_options)
        fs.makedirs(root, exist_ok=True)
        names = [f"{text.rstrip('/')}/slice-{k + 1:04d}.dcm" for k in range(n)]
    series_uid = new_uid()
    tasks: list[Any] = []
    start = 0
    blocks = array.to_delayed().ravel() if hasattr(array, "to_delayed") else [array]
    sizes = array.chunks[0] if hasattr(array, "chunks") else (n,)
    for block, size in zip(blocks, sizes, strict=True):
        part = slice(start, start + size)
        tasks.append(
            dask.delayed(_write_block)(
                block,
                headers[part],
                names[part],
                list(range(start + 1, start + size + 1)),
                encoder,
                series_uid,
                storage_options,
            )
        )
        start += size
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            dask.compute(*tasks)
    else:
        dask.compute(*tasks)
    return names
