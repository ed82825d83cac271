"""Tile encoders and the block functions dask runs: encode, downsample.

An [`Encoder`][dicom_dask.integrations.writers.encode.Encoder] turns one tile
``(rows, columns[, samples])`` into the bytes of one frame in a transfer syntax and
says which Photometric Interpretation the header must declare. JPEG baseline, JPEG
2000, HTJ2K and JPEG-LS use imagecodecs (libjpeg-turbo, OpenJPEG, OpenJPH, CharLS,
all releasing the GIL); RLE uses pydicom's encoder; Explicit VR Little Endian frames
are the native bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import uid as _uid

from dicom_dask.errors import (
    DicomDaskError,
    EncodeError,
    MissingDecoderError,
    UnsupportedTransferSyntaxError,
)

__all__ = ["SYNTAXES", "Encoder", "downsample2", "encode_block", "pad_tile"]

#: Transfer syntaxes the writer encodes, by short name.
SYNTAXES: dict[str, str] = {
    "jpeg": _uid.JPEGBaseline8Bit,
    "jpeg2000": _uid.JPEG2000,
    "jpeg2000-lossless": _uid.JPEG2000Lossless,
    "htj2k": _uid.HTJ2K,
    "htj2k-lossless": _uid.HTJ2KLossless,
    "jpegls": _uid.JPEGLSLossless,
    "rle": _uid.RLELossless,
    "explicit": _uid.ExplicitVRLittleEndian,
}
_LOSSLESS = {
    _uid.JPEG2000Lossless,
    _uid.HTJ2KLossless,
    _uid.JPEGLSLossless,
    _uid.RLELossless,
    _uid.ExplicitVRLittleEndian,
}
_LOSSY_METHOD = {
    _uid.JPEGBaseline8Bit: "ISO_10918_1",
    _uid.JPEG2000: "ISO_15444_1",
    _uid.HTJ2K: "ISO_15444_15",
}


def transfer_syntax_uid(value: str) -> _uid.UID:
    """A UID from a short name (``"jpeg"``, ``"jpeg2000-lossless"``...) or a UID string."""
    ts = _uid.UID(SYNTAXES.get(str(value).lower(), str(value)))
    if ts not in SYNTAXES.values():
        raise UnsupportedTransferSyntaxError(
            f"cannot write transfer syntax {value!r}; choose one of {sorted(SYNTAXES)} "
            "or their UIDs"
        )
    return ts


@dataclass(frozen=True)
class Encoder:
    """Encodes tiles of one instance.

    Attributes
    ----------
    transfer_syntax : str
        The transfer syntax UID.
    samples : int
        Samples per pixel (1 or 3).
    dtype : str
        NumPy dtype of the tiles (``uint8``, ``uint16``...).
    quality : int
        JPEG quality (1-100) or, for JPEG 2000, the PSNR in dB (lossy only); lossy
        HTJ2K uses OpenJPH's default quantisation.
    bits_stored : int, optional
        Bits Stored of the samples (default: all the dtype's bits). Signed samples are
        written as DICOM asks of JPEG-LS: their two's complement in ``bits_stored``
        bits, read back signed from Pixel Representation 1 (JPEG 2000 and HTJ2K carry
        the sign in the codestream, RLE and native data the bytes).
    """

    transfer_syntax: str
    samples: int
    dtype: str = "uint8"
    quality: int = 90
    bits_stored: int | None = None

    def __post_init__(self) -> None:
        ts = _uid.UID(self.transfer_syntax)
        if ts == _uid.JPEGBaseline8Bit and np.dtype(self.dtype) != np.uint8:
            raise UnsupportedTransferSyntaxError(
                f"JPEG baseline holds 8-bit samples only, not {self.dtype}"
            )
        if ts not in (_uid.ExplicitVRLittleEndian, _uid.RLELossless):
            try:
                import imagecodecs  # noqa: F401
            except ImportError as exc:
                raise MissingDecoderError(
                    f"writing {ts.name} needs imagecodecs: pip install 'dicom_dask[fast]'"
                ) from exc
        if self.samples not in (1, 3):
            raise UnsupportedTransferSyntaxError(
                f"tiles must have 1 or 3 samples per pixel, not {self.samples}"
            )

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the encoded tile exactly."""
        return _uid.UID(self.transfer_syntax) in _LOSSLESS

    @property
    def lossy_method(self) -> str | None:
        """Lossy Image Compression Method (0028,2114), or ``None`` when lossless."""
        return None if self.lossless else _LOSSY_METHOD[_uid.UID(self.transfer_syntax)]

    @property
    def photometric_interpretation(self) -> str:
        """What the encoded frames hold, as the header declares it."""
        if self.samples == 1:
            return "MONOCHROME2"
        ts = _uid.UID(self.transfer_syntax)
        if ts == _uid.JPEGBaseline8Bit:
            return "YBR_FULL_422"  # libjpeg-turbo: YCbCr, chroma subsampled 2x2
        if ts in (_uid.JPEG2000Lossless, _uid.HTJ2KLossless):
            return "YBR_RCT"  # the reversible colour transform inside the codestream
        if ts in (_uid.JPEG2000, _uid.HTJ2K):
            return "YBR_ICT"
        return "RGB"

    def __call__(self, tile: np.ndarray) -> bytes:
        """Encode one tile ``(rows, columns[, samples])``.

        Raises
        ------
        EncodeError
            When the codec refuses the tile (naming the syntax, shape, dtype and reason).
        """
        tile = np.ascontiguousarray(tile, dtype=self.dtype)
        try:
            return self._encode(tile)
        except DicomDaskError:
            raise
        except Exception as exc:  # imagecodecs and pydicom raise several kinds
            raise EncodeError(
                f"cannot encode a {'x'.join(map(str, tile.shape))} {tile.dtype} tile in "
                f"{_uid.UID(self.transfer_syntax).name}: {type(exc).__name__}: {exc}"
            ) from exc

    def _encode(self, tile: np.ndarray) -> bytes:
        ts = _uid.UID(self.transfer_syntax)
        if ts == _uid.ExplicitVRLittleEndian:
            return tile.astype(tile.dtype.newbyteorder("<"), copy=False).tobytes()
        if ts == _uid.RLELossless:
            return _rle(tile, self.samples)
        import imagecodecs

        colour = self.samples == 3
        if ts == _uid.JPEGBaseline8Bit:
            return bytes(imagecodecs.jpeg8_encode(tile, level=self.quality))
        if ts == _uid.JPEGLSLossless:
            return bytes(imagecodecs.jpegls_encode(self._jpegls_samples(tile), level=0))
        lossless = ts in (_uid.JPEG2000Lossless, _uid.HTJ2KLossless)
        if ts in (_uid.JPEG2000Lossless, _uid.JPEG2000):
            return bytes(
                imagecodecs.jpeg2k_encode(
                    tile,
                    level=0 if lossless else self.quality,
                    codecformat=imagecodecs.JPEG2K.CODEC.J2K,
                    reversible=lossless,
                    mct=colour,
                )
            )
        return bytes(
            imagecodecs.htj2k_encode(
                tile,
                reversible=lossless,
                rgb=colour,
            )
        )

    def _jpegls_samples(self, tile: np.ndarray) -> np.ndarray:
        """Signed samples as JPEG-LS holds them: unsigned, two's complement in Bits Stored.

        (PS3.5 A.4.3: the decoder's unsigned output is read as signed through Pixel
        Representation; CharLS takes unsigned samples only.)
        """
        if tile.dtype.kind != "i":
            return tile
        bits = int(self.bits_stored or 8 * tile.dtype.itemsize)
        unsigned = tile.view(np.dtype(f"u{tile.dtype.itemsize}"))
        return unsigned & unsigned.dtype.type((1 << bits) - 1)


def _rle(tile: np.ndarray, samples: int) -> bytes:
    from pydicom.pixels import get_encoder

    bits = tile.dtype.itemsize * 8
    return bytes(
        get_encoder(_uid.RLELossless).encode(
            tile,
            rows=tile.shape[0],
            columns=tile.shape[1],
            samples_per_pixel=samples,
            bits_allocated=bits,
            bits_stored=bits,
            pixel_representation=int(tile.dtype.kind == "i"),
            photometric_interpretation="RGB" if samples == 3 else "MONOCHROME2",
            planar_configuration=0,
            number_of_frames=1,
        )
    )


def pad_tile(part: np.ndarray, tile: tuple[int, int], fill: Any = 0) -> np.ndarray:
    """``part`` in the top-left corner of a ``tile``-sized array (edge tiles)."""
    if part.shape[:2] == tile:
        return part
    out = np.full((*tile, *part.shape[2:]), fill, dtype=part.dtype)
    out[: part.shape[0], : part.shape[1]] = part
    return out


def encode_block(
    block: np.ndarray, *, tile: tuple[int, int], encoder: Encoder, fill: Any = 0
) -> np.ndarray:
    """Encode the tiles of ``block`` (whole tiles, edge tiles padded with ``fill``).

    Returns an object array ``(tile rows, tile columns)`` of bytes, one per frame.
    """
    th, tw = tile
    ny, nx = -(-block.shape[0] // th), -(-block.shape[1] // tw)
    out = np.empty((ny, nx), dtype=object)
    for r in range(ny):
        for c in range(nx):
            part = block[r * th : (r + 1) * th, c * tw : (c + 1) * tw]
            out[r, c] = encoder(pad_tile(part, tile, fill))
    return out


def downsample2(block: np.ndarray) -> np.ndarray:
    """Average 2 x 2 pixels (rounded half up), in integers for integer dtypes.

    ``block`` has even rows and columns; samples (a third axis) are kept. The four
    strided quarters are added (not a reduction over a reshaped view, 10x slower).
    """
    h, w = block.shape[0] // 2 * 2, block.shape[1] // 2 * 2
    quarters = (block[0:h:2, 0:w:2], block[1:h:2, 0:w:2], block[0:h:2, 1:w:2], block[1:h:2, 1:w:2])
    if block.dtype.kind in "ui":
        wide = np.dtype(f"{block.dtype.kind}{min(8, 2 * block.dtype.itemsize)}")
        total = quarters[0].astype(wide)
        for q in quarters[1:]:
            total += q
        total += 2
        total //= 4
        return total.astype(block.dtype)
    total = quarters[0].astype(np.float64)
    for q in quarters[1:]:
        total += q
    return (total / 4).astype(block.dtype)
