"""The exception hierarchy of dicom_dask.

Every error raised on bad input derives from [`DicomDaskError`][dicom_dask.errors.DicomDaskError];
messages name the file or URL, the frame number or byte offset and what was expected.
"""

from __future__ import annotations

__all__ = [
    "CorruptFrameError",
    "CredentialsWarning",
    "DestinationExistsError",
    "DicomDaskError",
    "InvalidHeaderError",
    "LayoutError",
    "LayoutWarning",
    "ManifestError",
    "NoImagesError",
    "MissingDecoderError",
    "NoPixelDataError",
    "NotDicomError",
    "OffsetTableError",
    "RangeNotSupportedError",
    "ReadError",
    "SourceNotFoundError",
    "StaleIndexError",
    "TruncatedFileError",
    "UnsupportedTransferSyntaxError",
]


class DicomDaskError(Exception):
    """Base class of every error raised by dicom_dask."""


class NotDicomError(DicomDaskError, ValueError):
    """The source is not a DICOM dataset."""


class NoPixelDataError(DicomDaskError, ValueError):
    """The dataset has no Pixel Data, Float Pixel Data or Double Float Pixel Data."""


class InvalidHeaderError(DicomDaskError, ValueError):
    """A header attribute is missing, inconsistent or claims an impossible size."""


class LayoutError(InvalidHeaderError):
    """Frames cannot be placed on a tile grid or stacked into a volume."""


class NoImagesError(DicomDaskError, ValueError):
    """A folder, glob or list holds no image that fits the request, or several that do."""


class UnsupportedTransferSyntaxError(DicomDaskError, ValueError):
    """The transfer syntax is not one dicom_dask can read."""


class MissingDecoderError(DicomDaskError, ImportError):
    """No installed package can decode this transfer syntax."""


class TruncatedFileError(DicomDaskError, ValueError):
    """The file ends before the data its header announces."""


class OffsetTableError(DicomDaskError, ValueError):
    """A Basic or Extended Offset Table, or the fragment items, are inconsistent."""


class CorruptFrameError(DicomDaskError, ValueError):
    """A frame's encoded bytes could not be decoded."""


class ManifestError(DicomDaskError, ValueError):
    """A chunk manifest or reference set is malformed."""


class StaleIndexError(ManifestError):
    """An index sidecar or reference set does not describe the source it is opened with:
    another URL, or a file whose size, ETag, generation or modification time changed
    since the index was written."""


class CredentialsWarning(UserWarning):
    """A URL carried credentials (``user:password@``): they are used by this process
    only and stripped from everything saved, pickled or shown."""


class ReadError(DicomDaskError, OSError):
    """Reading bytes from the source failed."""


class SourceNotFoundError(ReadError, FileNotFoundError):
    """The file or object does not exist."""


class LayoutWarning(UserWarning):
    """Files were put together despite a difference a stricter reading would refuse
    (e.g. pyramid levels with their own Frame of Reference, TILED_SPARSE frames on
    the same tile); the message names the files and the difference."""


class RangeNotSupportedError(ReadError):
    """The server answered a byte-range request with more than the range (it ignores
    ``Range`` and sends the whole file with status 200).

    dicom_dask reads every frame by byte range and never falls back to downloading
    whole files: read through a local copy instead (a ``simplecache::`` URL makes
    fsspec download the file once), or serve it with a server that honours ``Range``.
    """


class DestinationExistsError(DicomDaskError, FileExistsError):
    """A writer's destination already holds data and ``overwrite=True`` was not passed."""
