"""Read a DICOM header over fsspec, up to (and not including) the pixel data.

The dataset is parsed by pydicom from a `BlockReader`,
so only the header bytes are fetched, in a few requests of growing size. The
position and shape of the pixel data element are then read from its own header.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from fsspec.implementations.local import LocalFileSystem
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_dask.compat import character_set
from dicom_dask.enums import (
    DEFLATED_DATASET_SYNTAXES,
    ENCAPSULATED_SYNTAXES,
    NATIVE_SYNTAXES,
)
from dicom_dask.errors import (
    DicomDaskError,
    InvalidHeaderError,
    NoPixelDataError,
    NotDicomError,
    ReadError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from dicom_dask.frames.fetch import call_fs
from dicom_dask.frames.sizes import format_size
from dicom_dask.frames.source import BlockReader
from dicom_dask.frames.values import fast_get

__all__ = ["DicomHeader", "PixelDataElement", "PixelDescription", "read_header"]

#: The pixel data tags, with their keywords.
PIXEL_TAGS: dict[int, str] = {
    0x7FE00010: "PixelData",
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
}
#: The largest decoded frame accepted by default (bytes).
MAX_FRAME_BYTES = 2**31
_UNDEFINED = 0xFFFFFFFF
_PHOTOMETRICS = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "PALETTE COLOR",
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
        "YBR_PARTIAL_420",
    }
)


@dataclass(frozen=True)
class PixelDescription:
    """The Image Pixel attributes that shape the decoded frames."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int
    pixel_keyword: str = "PixelData"

    @classmethod
    def from_dataset(
        cls, ds: Dataset, *, url: str, pixel_keyword: str = "PixelData"
    ) -> PixelDescription:
        """Validate and collect the Image Pixel attributes of ``ds``."""

        def need(keyword: str, tag: str) -> Any:
            value = fast_get(ds, keyword)
            if value is None or value == "":
                raise InvalidHeaderError(
                    f"{url}: ({tag}) '{keyword}' is missing, required to read the pixel data"
                )
            return value

        rows = int(need("Rows", "0028,0010"))
        columns = int(need("Columns", "0028,0011"))
        bits_allocated = int(need("BitsAllocated", "0028,0100"))
        spp = int(fast_get(ds, "SamplesPerPixel", 1) or 1)
        photometric = str(fast_get(ds, "PhotometricInterpretation", "") or "").strip().upper()
        if not photometric:
            photometric = "MONOCHROME2" if spp == 1 else "RGB"
        if pixel_keyword == "PixelData":
            bits_stored = int(fast_get(ds, "BitsStored", bits_allocated) or bits_allocated)
            pixel_representation = int(fast_get(ds, "PixelRepresentation", 0) or 0)
        else:
            bits_stored = bits_allocated
            pixel_representation = 0
        planar = int(fast_get(ds, "PlanarConfiguration", 0) or 0) if spp > 1 else 0
        frames_value = fast_get(ds, "NumberOfFrames", 1)
        try:
            frames = int(frames_value) if frames_value not in (None, "") else 1
        except (TypeError, ValueError):
            raise InvalidHeaderError(
                f"{url}: (0028,0008) 'Number of Frames' is {frames_value!r}, "
                "expected a positive integer"
            ) from None
        desc = cls(
            rows=rows,
            columns=columns,
            samples_per_pixel=spp,
            bits_allocated=bits_allocated,
            bits_stored=bits_stored,
            pixel_representation=pixel_representation,
            photometric_interpretation=photometric,
            planar_configuration=planar,
            number_of_frames=frames,
            pixel_keyword=pixel_keyword,
        )
        desc.validate(url)
        return desc

    def validate(self, url: str) -> None:
        """Raise [`InvalidHeaderError`][dicom_dask.errors.InvalidHeaderError] for values dicom_dask
        cannot represent."""
        problems = []
        if not 0 < self.rows <= 0xFFFF:
            problems.append(f"(0028,0010) 'Rows' is {self.rows}, expected 1..65535")
        if not 0 < self.columns <= 0xFFFF:
            problems.append(f"(0028,0011) 'Columns' is {self.columns}, expected 1..65535")
        if self.samples_per_pixel not in (1, 3):
            problems.append(
                f"(0028,0002) 'Samples per Pixel' is {self.samples_per_pixel}, expected 1 or 3"
            )
        allowed = {1, 8, 16, 32} if self.pixel_keyword == "PixelData" else {32, 64}
        if self.pixel_keyword == "DoubleFloatPixelData":
            allowed = {64}
        if self.bits_allocated not in allowed:
            problems.append(
                f"(0028,0100) 'Bits Allocated' is {self.bits_allocated}, expected one of "
                f"{sorted(allowed)} for {self.pixel_keyword}"
            )
        if not 0 < self.bits_stored <= self.bits_allocated:
            problems.append(
                f"(0028,0101) 'Bits Stored' is {self.bits_stored}, expected "
                f"1..{self.bits_allocated}"
            )
        if self.pixel_representation not in (0, 1):
            problems.append(
                f"(0028,0103) 'Pixel Representation' is {self.pixel_representation}, "
                "expected 0 or 1"
            )
        if self.number_of_frames < 1:
            problems.append(
                f"(0028,0008) 'Number of Frames' is {self.number_of_frames}, expected >= 1"
            )
        if self.photometric_interpretation not in _PHOTOMETRICS:
            problems.append(
                f"(0028,0004) 'Photometric Interpretation' is "
                f"{self.photometric_interpretation!r}, expected one of {sorted(_PHOTOMETRICS)}"
            )
        if self.frame_nbytes > MAX_FRAME_BYTES:
            problems.append(
                f"one decoded frame of {format_size(self.columns, self.rows)} x "
                f"{self.samples_per_pixel} sample(s) would take {self.frame_nbytes} bytes, "
                f"more than the limit of {MAX_FRAME_BYTES}"
            )
        if problems:
            raise InvalidHeaderError(f"{url}: " + "; ".join(problems))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of decoded frames (pydicom's ``pixel_array`` dtype)."""
        if self.pixel_keyword == "FloatPixelData":
            return np.dtype("<f4")
        if self.pixel_keyword == "DoubleFloatPixelData":
            return np.dtype("<f8")
        if self.bits_allocated == 1:
            return np.dtype("u1")
        kind = "i" if self.pixel_representation else "u"
        return np.dtype(f"<{kind}{self.bits_allocated // 8}")

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """The shape of one decoded frame: (rows, columns[, samples])."""
        if self.samples_per_pixel > 1:
            return (self.rows, self.columns, self.samples_per_pixel)
        return (self.rows, self.columns)

    @property
    def frame_pixels(self) -> int:
        """Number of samples in one frame."""
        return self.rows * self.columns * self.samples_per_pixel

    @property
    def frame_nbytes(self) -> int:
        """Bytes of one decoded frame."""
        return self.frame_pixels * self.dtype.itemsize

    @property
    def native_frame_bits(self) -> int:
        """Bits one frame occupies in native (uncompressed) encoding."""
        if self.photometric_interpretation == "YBR_FULL_422" and self.samples_per_pixel == 3:
            return self.rows * self.columns * 2 * self.bits_allocated
        return self.frame_pixels * self.bits_allocated

    def decoder_options(self) -> dict[str, Any]:
        """Keyword arguments describing one frame to pydicom's decoders."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "planar_configuration": self.planar_configuration,
            "pixel_keyword": self.pixel_keyword,
        }


@dataclass(frozen=True)
class PixelDataElement:
    """Where the pixel data element lies in the file."""

    tag: int
    keyword: str
    vr: str
    #: Offset of the element's tag.
    element_offset: int
    #: Offset of the first byte of its value.
    value_offset: int
    #: Value length, or ``None`` for undefined length (encapsulated).
    length: int | None


@dataclass(frozen=True, eq=False)
class DicomHeader:
    """A dataset without its pixel data, and what is needed to locate the frames."""

    url: str
    dataset: Dataset
    transfer_syntax: UID
    file_size: int
    element: PixelDataElement
    description: PixelDescription
    little_endian: bool
    #: For a deflated dataset: the inflated pixel data value (it cannot be range-read).
    inline_pixel_data: bytes | None = None

    @property
    def is_encapsulated(self) -> bool:
        """Whether the pixel data are encapsulated (compressed frames in items)."""
        return self.transfer_syntax in ENCAPSULATED_SYNTAXES


def _parse_dataset(reader: BlockReader, url: str) -> tuple[Dataset, bool, bytes | None]:
    """Parse the header; return the dataset, whether a preamble was present and, for a
    local file, the 12 bytes that follow the parsed elements (else ``None``).

    pydicom reads element by element: a buffered view over the block reader turns
    thousands of small Python-level reads into a few; ``reader`` is left positioned
    where the parse stopped.
    """
    source = reader.source
    if type(source.fs) is LocalFileSystem:  # pydicom is fastest on a real file
        with call_fs(url, open, source.path, "rb") as local:
            ds, preamble = _parse(local, reader, url)
            local.seek(reader.tell())
            return ds, preamble, local.read(12)  # the pixel data element's header
    buffered = io.BufferedReader(reader, buffer_size=8192)
    try:
        return (*_parse(buffered, reader, url), None)
    finally:
        buffered.detach()


_PIXEL_TAGS = frozenset(PIXEL_TAGS)


def _quick(fp: Any) -> Dataset | None:
    """The common case through pydicom's ``read_dataset``, without ``dcmread``'s extras.

    A preamble, an explicit VR little endian File Meta group and a non-deflated
    transfer syntax: the meta group and the dataset (up to the pixel data) are read
    by pydicom's own ``read_dataset``, skipping ``dcmread``'s conversion and
    validation of the meta elements (half of its time on small headers). Anything
    else returns ``None`` and goes through ``dcmread``.
    """
    fp.seek(128)
    if fp.read(4) != b"DICM":
        return None
    meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2)
    value = fast_get(meta, "TransferSyntaxUID")
    if not value:
        return None
    tsyntax = UID(str(value))
    if tsyntax in DEFLATED_DATASET_SYNTAXES or not tsyntax.is_transfer_syntax:
        return None
    implicit, little = tsyntax.is_implicit_VR, tsyntax.is_little_endian
    ds = read_dataset(fp, implicit, little, stop_when=lambda tag, vr, length: tag in _PIXEL_TAGS)
    ds.file_meta = FileMetaDataset(meta)
    # as dcmread: the original encoding records Python codec names, not DICOM terms
    ds.set_original_encoding(implicit, little, character_set(ds))
    return ds


def _parse(buffered: Any, reader: BlockReader, url: str) -> tuple[Dataset, bool]:
    try:
        ds = _quick(buffered)
        if ds is not None:
            reader.seek(buffered.tell())
            return ds, True
    except ReadError:
        raise
    except Exception:  # dcmread below tells what is wrong with the file
        pass
    try:
        buffered.seek(0)
        ds = pydicom.dcmread(buffered, stop_before_pixels=True, force=False)
        reader.seek(buffered.tell())
        return ds, True
    except InvalidDicomError:
        pass
    except ReadError:
        raise
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise NotDicomError(f"{url}: not a readable DICOM file: {exc}") from exc
    try:
        buffered.seek(0)
        ds = pydicom.dcmread(buffered, stop_before_pixels=True, force=True)
        reader.seek(buffered.tell())
    except ReadError:
        raise
    except Exception as exc:
        raise NotDicomError(
            f"{url}: no DICOM preamble ('DICM' at byte 128) and not parseable as a raw "
            f"dataset: {exc}"
        ) from exc
    return ds, False


def _transfer_syntax(ds: Dataset, url: str) -> UID:
    meta = getattr(ds, "file_meta", None)
    tsuid = fast_get(meta, "TransferSyntaxUID") if meta is not None else None
    if tsuid:
        return UID(str(tsuid).strip("\x00 "))
    implicit, little = ds.original_encoding
    if implicit is None:
        raise NotDicomError(f"{url}: cannot tell the transfer syntax (no file meta information)")
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _parse_element_header(
    raw: bytes, offset: int, *, implicit: bool, little: bool, url: str
) -> PixelDataElement:
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", raw[:4])
    tag = (group << 16) | elem
    if tag not in PIXEL_TAGS:
        raise NotDicomError(
            f"{url}: expected a pixel data element at byte {offset}, found tag "
            f"({group:04X},{elem:04X})"
        )
    if implicit:
        (length,) = struct.unpack(endian + "L", raw[4:8])
        vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(tag, "OW")
        header_len = 8
    else:
        vr = raw[4:6].decode("ascii", "replace")
        if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "UT", "SQ", "UC", "UR"):
            (length,) = struct.unpack(endian + "L", raw[8:12])
            header_len = 12
        else:
            (length,) = struct.unpack(endian + "H", raw[6:8])
            header_len = 8
    return PixelDataElement(
        tag=tag,
        keyword=PIXEL_TAGS[tag],
        vr=vr,
        element_offset=offset,
        value_offset=offset + header_len,
        length=None if length == _UNDEFINED else int(length),
    )


def read_header(reader: BlockReader) -> DicomHeader:
    """Read the header of the file behind ``reader`` and locate its pixel data.

    Raises
    ------
    NotDicomError, NoPixelDataError, InvalidHeaderError, TruncatedFileError,
    UnsupportedTransferSyntaxError
    """
    try:
        return _read_header(reader)
    except (DicomDaskError, MemoryError):
        raise
    except Exception as exc:  # pydicom's value conversion raises many kinds on bad values
        raise InvalidHeaderError(
            f"{reader.source.url}: a header value cannot be read: {type(exc).__name__}: {exc}"
        ) from exc


def _read_header(reader: BlockReader) -> DicomHeader:
    url = reader.source.url
    size = reader.source.size
    if size == 0:
        raise NotDicomError(f"{url}: the file is empty")
    ds, has_preamble, local_head = _parse_dataset(reader, url)
    if not has_preamble and "Rows" not in ds:
        raise NotDicomError(
            f"{url}: no DICOM preamble ('DICM' at byte 128), and read as a raw dataset it "
            "has no (0028,0010) 'Rows': not a DICOM image"
        )
    tsyntax = _transfer_syntax(ds, url)
    if tsyntax in DEFLATED_DATASET_SYNTAXES:
        return _read_deflated(reader, url, tsyntax)
    if tsyntax not in NATIVE_SYNTAXES and tsyntax not in ENCAPSULATED_SYNTAXES:
        raise UnsupportedTransferSyntaxError(
            f"{url}: transfer syntax {tsyntax} ({tsyntax.name}) is not supported; expected "
            "a native, JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE or deflated syntax"
        )
    pos = reader.tell()
    if local_head is not None:  # read with the parse: no block read of a local file
        head = local_head
        reader.seek(pos + len(head))
    else:
        head = reader.read(12) if pos < size else b""
    if len(head) < 8:
        tags = [int(t) for t in ds.keys()]  # noqa: SIM118 - iterating a Dataset yields elements
        if tags and pos >= size and not any(t in PIXEL_TAGS for t in tags):
            raise NoPixelDataError(
                f"{url}: the dataset has no pixel data element (read to the end of file, "
                f"byte {size})"
            )
        raise TruncatedFileError(
            f"{url}: the file ends at byte {size}, inside the pixel data element header "
            f"that starts at byte {pos}"
        )
    implicit = tsyntax == ImplicitVRLittleEndian
    little = tsyntax != ExplicitVRBigEndian
    element = _parse_element_header(head, pos, implicit=implicit, little=little, url=url)
    if tsyntax in ENCAPSULATED_SYNTAXES and element.length is not None:
        raise InvalidHeaderError(
            f"{url}: {element.keyword} at byte {pos} has defined length {element.length}, "
            f"but transfer syntax {tsyntax.name} needs encapsulated (undefined length) data"
        )
    if tsyntax in NATIVE_SYNTAXES and element.length is None:
        raise InvalidHeaderError(
            f"{url}: {element.keyword} at byte {pos} has undefined length, but transfer "
            f"syntax {tsyntax.name} is native"
        )
    if element.length is not None and element.value_offset + element.length > size:
        raise TruncatedFileError(
            f"{url}: {element.keyword} claims {element.length} bytes from byte "
            f"{element.value_offset}, but the file ends at byte {size}"
        )
    desc = PixelDescription.from_dataset(ds, url=url, pixel_keyword=element.keyword)
    return DicomHeader(
        url=url,
        dataset=ds,
        transfer_syntax=tsyntax,
        file_size=size,
        element=element,
        description=desc,
        little_endian=little,
    )


def _read_deflated(reader: BlockReader, url: str, tsyntax: UID) -> DicomHeader:
    """Read a dataset-wide deflated file whole: it cannot be range-read."""
    reader.seek(0)
    try:
        full = pydicom.dcmread(reader, force=True)
    except Exception as exc:
        raise NotDicomError(f"{url}: cannot inflate the deflated dataset: {exc}") from exc
    keyword = next((k for k in PIXEL_TAGS.values() if k in full), None)
    if keyword is None:
        raise NoPixelDataError(f"{url}: the dataset has no pixel data element")
    value = bytes(full[keyword].value)
    desc = PixelDescription.from_dataset(full, url=url, pixel_keyword=keyword)
    del full[keyword]
    element = PixelDataElement(
        tag=next(t for t, k in PIXEL_TAGS.items() if k == keyword),
        keyword=keyword,
        vr="OB",
        element_offset=-1,
        value_offset=0,
        length=len(value),
    )
    return DicomHeader(
        url=url,
        dataset=full,
        transfer_syntax=UID(tsyntax),
        file_size=reader.source.size,
        element=element,
        description=desc,
        little_endian=True,
        inline_pixel_data=value,
    )
