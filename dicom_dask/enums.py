"""Enumerations and transfer syntax groups, coerced from strings at the boundary."""

from __future__ import annotations

import enum

from pydicom import uid as _uid

__all__ = [
    "DEFLATED_DATASET_SYNTAXES",
    "ITEM_TAG",
    "SEQUENCE_DELIMITER",
    "DEFLATED_FRAME_SYNTAX",
    "ENCAPSULATED_SYNTAXES",
    "NATIVE_SYNTAXES",
    "FrameEncoding",
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
