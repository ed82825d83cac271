"""``to_dicom_series``: a volume opened with ``open_volume`` rewritten as a single-frame series.

Each slice keeps its source header (patient, study, Frame of Reference, position,
orientation, rescale...) under a new series and new instance UIDs, with its pixels
re-encoded in the requested transfer syntax. One dask task writes the files of one
block of slices, so a cluster's workers encode and write in parallel.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

from dicom_dask.errors import EncodeError, LayoutError
from dicom_dask.frames.storage import redact, resolve_fs
from dicom_dask.images.volume import Volume
from dicom_dask.integrations.writers.common import join_path, make_folder
from dicom_dask.integrations.writers.dataset import new_uid
from dicom_dask.integrations.writers.encode import Encoder, transfer_syntax_uid
from dicom_dask.integrations.writers.headers import slice_sources
from dicom_dask.integrations.writers.options import (
    WriteOptions,
    check_destination,
    compute,
    remove_files,
)
from dicom_dask.integrations.writers.stream import is_local
from dicom_dask.types import StorageOptions

__all__ = ["to_dicom_series"]

#: The files a series written by ``to_dicom_series`` has in its folder.
SERIES_FILES = r"slice-\d+\.dcm"


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
    meta = FileMetaDataset()  # the source's may be absent (files without a meta header)
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
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
    positions: Sequence[int],
    encoder: Encoder,
    series_uid: str,
    storage_options: StorageOptions,
) -> int:
    """Write the slices ``positions`` (indices into ``block``) to ``names``."""
    for header, name, k in zip(headers, names, positions, strict=True):
        try:
            ds = _slice_dataset(header, block[k], encoder, series_uid, int(header.InstanceNumber))
            if is_local(name):
                ds.save_as(name, enforce_file_format=True)
            else:
                fs, path = resolve_fs(name, storage_options)
                with fs.open(path, "wb") as fh:
                    ds.save_as(fh, enforce_file_format=True)
        except Exception as exc:
            raise EncodeError(f"{redact(name)}: writing the slice failed: {exc}") from exc
    return len(names)


def _check_values(volume: Volume, header: Dataset, where: str) -> None:
    """The volume holds the stored values its headers describe (not transformed ones)."""
    if "transform" in volume.metadata:
        raise LayoutError(
            f"{where}: to_dicom_series writes stored values; this volume is transformed() "
            "(write the volume from open_volume, or a result with to_dicom_seg)"
        )
    if int(header.get("SamplesPerPixel", 1) or 1) > 1:
        return
    bits = int(header.BitsAllocated)
    kind = "i" if int(header.get("PixelRepresentation", 0) or 0) else "u"
    if volume.dtype != np.dtype(f"{kind}{bits // 8}"):
        raise LayoutError(
            f"{where}: the volume holds {volume.dtype} but its images store {kind}{bits} "
            "values: to_dicom_series writes stored values"
        )


def to_dicom_series(
    volume: Volume,
    dest: str | os.PathLike[str],
    *,
    transfer_syntax: str | None = None,
    quality: int | None = None,
    storage_options: StorageOptions = None,
    overwrite: bool = False,
    progress: bool | None = None,
    options: WriteOptions | Mapping[str, Any] | None = None,
) -> list[str]:
    """Rewrite the slices of ``volume`` as a new single-frame series in the folder ``dest``.

    Each slice keeps its source header (a new series and instance UIDs; text re-encoded
    as UTF-8; a new Frame of Reference, shared by the series, when the source has none).
    A slice missing from the volume (``geometry="positions"``) has no image: the slices
    that exist are written, each at its own position, and reopen with the same gap.

    Parameters
    ----------
    volume : Volume
        Opened with [`open_volume`][dicom_dask.images.volume.open_volume] from single-frame
        files, possibly sliced along its slices or computed (its stored values: not
        ``transformed()``), without channel dimensions.
    dest : str or path
        A folder, local or an fsspec URL; files are ``slice-0001.dcm``... numbered by
        the slice's index in the volume.
    transfer_syntax : str, optional
        As [`to_dicom_slide`][dicom_dask.integrations.writers.slide.to_dicom_slide]
        (default ``"explicit"``); the lossless ones (explicit VR, RLE, JPEG-LS, JPEG
        2000, HTJ2K) carry signed data.
    quality : int, optional
        JPEG quality, or JPEG 2000 PSNR (dB), for the lossy syntaxes (default 90).
    storage_options : mapping or callable, optional
        fsspec options of ``dest``; the tasks that write the files use them.
    overwrite : bool
        Replace the ``slice-NNNN.dcm`` files of a series already in ``dest`` (also
        ``options.overwrite``). Without
        it, any of them raises
        [`DestinationExistsError`][dicom_dask.errors.DestinationExistsError] before
        anything is read or written; with it, those this series does not replace are
        removed once it is written, so that the folder holds one series.
    progress : bool, optional
        Show dask's progress bar (default: ``options.progress``, true).
    options : WriteOptions or mapping, optional
        The options every writer shares
        ([`WriteOptions`][dicom_dask.integrations.writers.options.WriteOptions]); the
        keywords of the same names given here take precedence.

    Returns
    -------
    list of str
        The written files, in volume order.
    """
    import dask
    import dask.array as da

    opts = WriteOptions.coerce(
        options,
        defaults={"transfer_syntax": "explicit", "quality": 90},
        storage_options=storage_options,
        overwrite=overwrite or None,
        progress=progress,
        transfer_syntax=transfer_syntax,
        quality=quality,
    )
    storage_options = opts.storage_options
    sources = slice_sources(volume, purpose="to_dicom_series")
    present = sources.present
    first = sources.headers[present[0]]
    assert first is not None
    _check_values(volume, first, sources.where)
    array = volume.array
    samples = array.shape[3] if array.ndim == 4 else 1
    encoder = Encoder(
        transfer_syntax_uid(str(opts.transfer_syntax)),
        samples,
        str(array.dtype),
        int(opts.quality if opts.quality is not None else 90),
        bits_stored=int(first.get("BitsStored", 8 * array.dtype.itemsize)),
    )
    text = os.fspath(dest)
    names = {k: join_path(text, f"slice-{k + 1:04d}.dcm") for k in present}
    leftover = check_destination(
        list(names.values()),
        storage_options=storage_options,
        overwrite=opts.overwrite,
        family=SERIES_FILES,
    )
    make_folder(text, storage_options)
    series_uid = new_uid()
    if not isinstance(array, da.Array):
        array = da.from_array(np.asarray(array), chunks=(1, *array.shape[1:]))
    # whole slices per block: one task writes the files of one block
    array = array.rechunk({i: -1 for i in range(1, array.ndim)})
    tasks: list[Any] = []
    start = 0
    for block, size in zip(array.to_delayed().ravel(), array.chunks[0], strict=True):
        inside = [k for k in present if start <= k < start + size]
        if inside:
            headers = []
            for k in inside:
                header = sources.fitted(k)
                header.InstanceNumber = k + 1
                headers.append(header)
            tasks.append(
                dask.delayed(_write_block)(
                    block,
                    headers,
                    [names[k] for k in inside],
                    [k - start for k in inside],
                    encoder,
                    series_uid,
                    storage_options,
                )
            )
        start += size
    compute(*tasks, progress=opts.progress)
    remove_files(leftover, storage_options)
    return [names[k] for k in present]
