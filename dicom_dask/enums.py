"""Enumerations and transfer syntax groups, coerced from strings at the boundary."""

from __future__ import annotations

import enum

from pydicom import uid as _uid

from dicom_dask.errors import InvalidOptionError

__all__ = [
    "DEFLATED_DATASET_SYNTAXES",
    "ITEM_TAG",
    "SEQUENCE_DELIMITER",
    "DEFLATED_FRAME_SYNTAX",
    "ENCAPSULATED_SYNTAXES",
    "NATIVE_SYNTAXES",
    "FrameEncoding",
    "Kind",
]

#: The little-endian bytes of the item tag (FFFE,E000) of encapsulated pixel data.
ITEM_TAG = b"\xfe\xff\x00\xe0"
#: The little-endian bytes of the sequence delimitation tag (FFFE,E0DD).
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
#: Transfer syntaxes whose pixel data are stored natively (uncompressed).
NATIVE_SYNTAXES: frozenset[str] = frozenset(
    {_uid.ImplicitVRLittleEndian, _uid.ExplicitVRLittleEndian, _uid.ExplicitVRBigEndian}
)
#: Transfer syntaxes that deflate the whole dataset: they cannot be range-read.
DEFLATED_DATASET_SYNTAXES: frozenset[str] = frozenset(
    {_uid.DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.1.99"}
)
#: Deflated Image Frame Compression: each frame is a raw deflate stream.
DEFLATED_FRAME_SYNTAX = "1.2.840.10008.1.2.8.1"
#: Encapsulated transfer syntaxes dicom_dask decodes.
ENCAPSULATED_SYNTAXES: frozenset[str] = frozenset(
    {
        _uid.JPEGBaseline8Bit,
        _uid.JPEGExtended12Bit,
        _uid.JPEGLossless,
        _uid.JPEGLosslessSV1,
        _uid.JPEGLSLossless,
        _uid.JPEGLSNearLossless,
        _uid.JPEG2000Lossless,
        _uid.JPEG2000,
        _uid.HTJ2KLossless,
        _uid.HTJ2KLosslessRPCL,
        _uid.HTJ2K,
        _uid.RLELossless,
        DEFLATED_FRAME_SYNTAX,
    }
)


class FrameEncoding(enum.Enum):
    """How the bytes of one chunk are laid out in the source."""

    #: The range holds exactly the encoded (or native) bytes of the chunk.
    RAW = 0
    #: The range holds one or more whole DICOM items (tag, length, value); the
    #: encoded frame is the concatenation of their values.
    ITEMS = 1
    #: The chunk is frame ``offset`` (1-based) of the DICOMweb instance at ``url``,
    #: fetched with WADO-RS as stored; its length is unknown until fetched.
    WADO = 2

    @classmethod
    def coerce(cls, value: FrameEncoding | str | int) -> FrameEncoding:
        """Return ``value`` as a [`FrameEncoding`][dicom_dask.enums.FrameEncoding] (accepts names
        and values)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls[value.upper()]
        return cls(value)


class Kind(enum.StrEnum):
    """What a source opens as: its frames, a volume or a slide.

    [`source_kind`][dicom_dask.images.sources.source_kind] decides it from the source's
    headers (the rule is in its docstring and in ``docs/opening.md``);
    [`open_source`][dicom_dask.images.sources.open_source] opens the source as it.
    Every front end (the CLI's ``--as``, xarray's and ``to_kerchunk``'s ``kind=``, the
    napari reader) takes and gives these values.

    Strings are accepted wherever a ``Kind`` is, in any case (``Kind("Volume")``); any
    other value raises [`InvalidOptionError`][dicom_dask.errors.InvalidOptionError]
    naming it and the allowed values. A ``Kind`` is a ``str``: it compares equal to its
    value and is written to JSON as it.
    """

    #: The frames of one instance, as stored:
    #: [`open_frames`][dicom_dask.images.instance.open_frames] gives
    #: ``(frames, rows, columns[, samples])``.
    FRAMES = "frames"
    #: Slices placed in patient space (a series, an enhanced CT/MR, one CT slice):
    #: [`open_volume`][dicom_dask.images.volume.open_volume].
    VOLUME = "volume"
    #: A whole-slide pyramid (a tiled file or a folder of them):
    #: [`open_slide`][dicom_dask.images.slide.open_slide].
    SLIDE = "slide"

    @classmethod
    def _missing_(cls, value: object) -> Kind:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.strip().lower():
                    return member
        allowed = ", ".join(repr(m.value) for m in cls)
        raise InvalidOptionError(f"kind must be one of {allowed}, got {value!r}")

    @classmethod
    def coerce(cls, value: Kind | str) -> Kind:
        """Return ``value`` as a [`Kind`][dicom_dask.enums.Kind] (any case), else raise
        [`InvalidOptionError`][dicom_dask.errors.InvalidOptionError]."""
        return value if isinstance(value, cls) else cls(value)
