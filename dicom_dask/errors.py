"""The exception hierarchy of dicom_dask.

Every error raised on bad input derives from [`DicomDaskError`][dicom_dask.errors.DicomDaskError];
messages name the file or URL, the frame number or byte offset and what was expected.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmbiguousSourceError",
    "CorruptFrameError",
    "CredentialsWarning",
    "CroppedFrameError",
    "CroppedTileWarning",
    "DestinationExistsError",
    "DicomDaskError",
    "EncodeError",
    "InvalidOptionError",
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
    "UnsupportedVersionError",
    "WrongInputError",
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
    """A folder, glob or list holds no image that fits the request."""


class AmbiguousSourceError(NoImagesError):
    """A folder, glob or list holds several slides or stacks and the request does not
    say which: the message lists them and names the option that picks one
    (``select=``).

    A subclass of [`NoImagesError`][dicom_dask.errors.NoImagesError] (which was raised
    here before), so that code catching that keeps working.
    """


class InvalidOptionError(DicomDaskError, ValueError):
    """An option has a value the function does not take (``kind="pyramid"``); the message
    names the value and the values allowed.

    A subclass of ``ValueError``, which some of these options raised before."""


class WrongInputError(DicomDaskError, TypeError):
    """A function was given another kind of object than it takes (a
    [`Slide`][dicom_dask.images.slide.Slide] where an array is expected); the message
    names what to pass instead."""


class UnsupportedTransferSyntaxError(DicomDaskError, ValueError):
    """The transfer syntax is not one dicom_dask can read."""


class UnsupportedVersionError(DicomDaskError, ImportError):
    """An installed package lacks an internal dicom_dask relies on (see
    ``dicom_dask.compat``): the message names the package, its installed version and
    the versions dicom_dask is known to work with."""


class EncodeError(DicomDaskError, ValueError):
    """A writer could not encode a frame in the requested transfer syntax, or build the
    header of what it writes; the message names the file, the frame and the reason."""


class MissingDecoderError(DicomDaskError, ImportError):
    """No installed package can decode this transfer syntax."""


class TruncatedFileError(DicomDaskError, ValueError):
    """The file ends before the data its header announces."""


class OffsetTableError(DicomDaskError, ValueError):
    """A Basic or Extended Offset Table, or the fragment items, are inconsistent."""


class CorruptFrameError(DicomDaskError, ValueError):
    """A frame's encoded bytes could not be decoded."""


class CroppedFrameError(CorruptFrameError):
    """A frame decoded to fewer rows or columns than the image's *Rows* and *Columns*.

    Some writers store the tiles of a slide's last tile column or row at the size the
    total pixel matrix leaves them (a 55-pixel-wide JPEG where tiles are 240 wide).
    Readers that know where a tile lies paste such an edge tile in place (see
    [`CroppedTileWarning`][dicom_dask.errors.CroppedTileWarning]); anywhere else the
    frame is corrupt, and this error names the file, the frame and both sizes.

    Attributes
    ----------
    frame : numpy.ndarray
        The decoded frame, ``(frames, rows, columns[, samples])`` at its own size.
    expected : tuple of int
        ``(rows, columns[, samples])`` the image's header announces.
    """

    def __init__(self, message: str, *, frame: Any = None, expected: tuple[int, ...] = ()):
        super().__init__(message)
        self.frame = frame
        self.expected = tuple(expected)

    def __reduce__(self) -> Any:  # pickled (from a dask worker) without the decoded pixels
        return (type(self), (str(self),))


class ManifestError(DicomDaskError, ValueError):
    """A chunk manifest or reference set is malformed."""


class StaleIndexError(ManifestError):
    """An index sidecar or reference set does not describe the source it is opened with:
    another URL, or a file whose size, ETag, generation or modification time changed
    since the index was written."""


class CredentialsWarning(UserWarning):
    """A URL carried credentials (``user:password@``): they are used by this process
    only and stripped from everything saved, pickled or shown."""


class CroppedTileWarning(UserWarning):
    """Tiles at the right or bottom edge of the total pixel matrix are stored at the size
    the matrix leaves them, not at the image's *Rows* x *Columns* (pydicom and
    OpenSlide refuse such files). dicom_dask pastes each such tile in place and fills the
    rest of its grid cell with the fill value; warned once per file."""


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
