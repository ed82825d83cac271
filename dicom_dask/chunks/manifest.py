"""An immutable table from the chunk grid to byte ranges: the chunk manifest.

Like VirtualiZarr's ``ChunkManifest``: numpy arrays on the chunk grid, validated
once, read-only. It converts to and from kerchunk / fsspec reference sets, so a
file whose frames had to be scanned is scanned once and never again.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicom_dask.enums import ITEM_TAG, FrameEncoding
from dicom_dask.errors import CorruptFrameError, ManifestError

__all__ = ["ChunkManifest", "ChunkRef", "parse_chunk_key"]

#: The largest [`FrameEncoding`][dicom_dask.enums.FrameEncoding] value (they run from 0).
_MAX_ENCODING = max(e.value for e in FrameEncoding)

MISSING = -1
INLINE = -2


@dataclass(frozen=True)
class ChunkRef:
    """Where one chunk's bytes are: a byte range of a URL, or inline bytes."""

    url: str | None
    offset: int
    length: int
    encoding: FrameEncoding = FrameEncoding.RAW
    data: bytes | None = None

    def check(self, data: bytes | memoryview, where: str) -> None:
        """Raise [`CorruptFrameError`][dicom_dask.errors.CorruptFrameError] if ``data`` cannot be
        this chunk's bytes."""
        if self.encoding is FrameEncoding.WADO:
            if not len(data):
                raise CorruptFrameError(f"{self.url}: {where}: the server sent an empty frame")
            return
        if len(data) != self.length:
            raise CorruptFrameError(
                f"{self.url}: {where}: expected {self.length} bytes at offset {self.offset}, "
                f"got {len(data)}"
            )
        if self.encoding is FrameEncoding.ITEMS and bytes(memoryview(data)[:4]) != ITEM_TAG:
            raise CorruptFrameError(
                f"{self.url}: {where}: expected a fragment item tag (FFFE,E000) at byte "
                f"{self.offset}, found {bytes(memoryview(data)[:4]).hex()}; the offset table "
                "is probably wrong"
            )


def parse_chunk_key(key: str, ndim: int) -> tuple[int, ...] | None:
    """``"c/3/0/0"`` -> ``(3, 0, 0)``; ``None`` for anything that is not a chunk key."""
    parts = key.split("/")
    if len(parts) != ndim + 1 or parts[0] != "c":
        return None
    try:
        coords = tuple(int(p) for p in parts[1:])
    except ValueError:
        return None
    if any(c < 0 or str(c) != p for c, p in zip(coords, parts[1:], strict=True)):
        return None
    return coords


def reference(ref: ChunkRef) -> str | list[Any]:
    """A chunk's kerchunk reference: ``[url, offset, length]``, or ``"base64:..."`` for
    inline bytes.

    Raises
    ------
    ManifestError
        For a frame served by DICOMweb, which has no byte range to reference.
    """
    if ref.data is not None:
        return "base64:" + base64.b64encode(ref.data).decode("ascii")
    if ref.encoding is FrameEncoding.WADO:
        raise ManifestError(
            f"{ref.url}: frames served by DICOMweb have no byte ranges to reference"
        )
    return [ref.url, ref.offset, ref.length]


class ChunkManifest:
    """Chunk grid -> (url, offset, length, encoding), with optional inline chunks.

    Parameters
    ----------
    urls : sequence of str
        The distinct URLs chunks refer to.
    url_index : numpy.ndarray
        ``int32`` array on the chunk grid: index into ``urls``, ``-1`` for a missing
        chunk (read as the fill value), ``-2`` for an inline chunk.
    offsets, lengths : numpy.ndarray
        ``uint64`` arrays on the chunk grid (for inline chunks, ``offsets`` indexes
        ``inline``).
    encoding : numpy.ndarray, optional
        ``uint8`` [`FrameEncoding`][dicom_dask.enums.FrameEncoding] values.
    inline : sequence of bytes
        Bytes of inline chunks (data that cannot be range-read).
    """

    __slots__ = ("_encoding", "_inline", "_lengths", "_offsets", "_url_index", "_urls")

    def __init__(
        self,
        urls: tuple[str, ...] | list[str],
        url_index: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        encoding: np.ndarray | None = None,
        inline: tuple[bytes, ...] | list[bytes] = (),
    ) -> None:
        url_index = np.array(url_index, dtype=np.int32)
        offsets = np.array(offsets, dtype=np.uint64)
        lengths = np.array(lengths, dtype=np.uint64)
        if encoding is None:
            encoding = np.zeros(url_index.shape, dtype=np.uint8)
        encoding = np.array(encoding, dtype=np.uint8)
        shapes = {a.shape for a in (url_index, offsets, lengths, encoding)}
        if len(shapes) != 1:
            raise ManifestError(f"manifest arrays have different shapes: {sorted(shapes)}")
        urls = tuple(str(u) for u in urls)
        inline = tuple(bytes(b) for b in inline)
        if url_index.size:
            if url_index.max() >= len(urls) or url_index.min() < INLINE:
                raise ManifestError(
                    f"manifest url indices range over [{url_index.min()}, {url_index.max()}] "
                    f"but there are {len(urls)} URLs"
                )
            is_inline = url_index == INLINE
            if is_inline.any() and int(offsets[is_inline].max()) >= len(inline):
                raise ManifestError("manifest inline chunk index out of range")
            if int(encoding.max()) > _MAX_ENCODING:
                raise ManifestError("manifest encoding values must be FrameEncoding values")
        for arr in (url_index, offsets, lengths, encoding):
            arr.setflags(write=False)
        self._urls = urls
        self._url_index = url_index
        self._offsets = offsets
        self._lengths = lengths
        self._encoding = encoding
        self._inline = inline

    # -- read-only views ---------------------------------------------------------
    @property
    def urls(self) -> tuple[str, ...]:
        """The distinct URLs."""
        return self._urls

    @property
    def url_index(self) -> np.ndarray:
        """Index into [`urls`][dicom_dask.chunks.manifest.ChunkManifest.urls] per chunk (-1 missing,
        -2 inline)."""
        return self._url_index

    @property
    def offsets(self) -> np.ndarray:
        """Byte offset per chunk."""
        return self._offsets

    @property
    def lengths(self) -> np.ndarray:
        """Byte length per chunk."""
        return self._lengths

    @property
    def encoding(self) -> np.ndarray:
        """[`FrameEncoding`][dicom_dask.enums.FrameEncoding] value per chunk."""
        return self._encoding

    @property
    def inline(self) -> tuple[bytes, ...]:
        """Bytes of inline chunks."""
        return self._inline

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Number of chunks along each dimension."""
        return tuple(int(n) for n in self._url_index.shape)

    @property
    def present(self) -> np.ndarray:
        """Boolean array on the chunk grid: ``True`` where a chunk exists."""
        return self._url_index != MISSING

    def reshape(self, grid_shape: tuple[int, ...]) -> ChunkManifest:
        """The same chunks, in C order, on a grid of ``grid_shape`` (as NumPy's
        ``reshape``: the number of chunks must not change)."""
        return ChunkManifest(
            self._urls,
            self._url_index.reshape(grid_shape),
            self._offsets.reshape(grid_shape),
            self._lengths.reshape(grid_shape),
            self._encoding.reshape(grid_shape),
            self._inline,
        )

    def __len__(self) -> int:
        return int(np.count_nonzero(self.present))

    def __repr__(self) -> str:
        return (
            f"ChunkManifest(grid_shape={self.grid_shape}, chunks={len(self)}, "
            f"urls={len(self._urls)}, inline={len(self._inline)})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChunkManifest):
            return NotImplemented
        return (
            self._urls == other._urls
            and self._inline == other._inline
            and np.array_equal(self._url_index, other._url_index)
            and np.array_equal(self._offsets, other._offsets)
            and np.array_equal(self._lengths, other._lengths)
            and np.array_equal(self._encoding, other._encoding)
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    # -- lookup ------------------------------------------------------------------
    def get(self, coords: tuple[int, ...]) -> ChunkRef | None:
        """The reference of the chunk at ``coords``, or ``None`` when missing."""
        if len(coords) != len(self.grid_shape) or any(
            not 0 <= c < n for c, n in zip(coords, self.grid_shape, strict=True)
        ):
            return None
        idx = int(self._url_index[coords])
        if idx == MISSING:
            return None
        offset, length = int(self._offsets[coords]), int(self._lengths[coords])
        if idx == INLINE:
            data = self._inline[offset]
            return ChunkRef(None, 0, len(data), FrameEncoding.RAW, data)
        return ChunkRef(self._urls[idx], offset, length, FrameEncoding(int(self._encoding[coords])))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Chunk keys (``c/i/j/...``) of the present chunks."""
        for coords in zip(*np.nonzero(self.present), strict=True):
            yield prefix + "c/" + "/".join(str(int(c)) for c in coords)

    # -- kerchunk references -----------------------------------------------------
    def to_references(self, prefix: str = "") -> dict[str, Any]:
        """Kerchunk/fsspec references ``{key: [url, offset, length] | "base64:..."}``."""
        refs: dict[str, Any] = {}
        for key in self.keys(prefix):
            coords = parse_chunk_key(key[len(prefix) :], len(self.grid_shape))
            assert coords is not None
            ref = self.get(coords)
            assert ref is not None
            refs[key] = reference(ref)
        return refs

    @classmethod
    def from_references(
        cls,
        refs: Mapping[str, Any],
        grid_shape: tuple[int, ...],
        *,
        prefix: str = "",
        encoding: np.ndarray | None = None,
    ) -> ChunkManifest:
        """Rebuild a manifest from kerchunk references of one array."""
        urls: dict[str, int] = {}
        url_index = np.full(grid_shape, MISSING, dtype=np.int32)
        offsets = np.zeros(grid_shape, dtype=np.uint64)
        lengths = np.zeros(grid_shape, dtype=np.uint64)
        inline: list[bytes] = []
        for key, value in refs.items():
            if not key.startswith(prefix):
                continue
            coords = parse_chunk_key(key[len(prefix) :], len(grid_shape))
            if coords is None:
                continue
            if any(c >= n for c, n in zip(coords, grid_shape, strict=True)):
                raise ManifestError(f"reference {key!r} lies outside the grid {grid_shape}")
            if isinstance(value, str | bytes):
                text = value.decode() if isinstance(value, bytes) else value
                data = base64.b64decode(text[7:]) if text.startswith("base64:") else text.encode()
                url_index[coords] = INLINE
                offsets[coords] = len(inline)
                lengths[coords] = len(data)
                inline.append(data)
                continue
            if not isinstance(value, list | tuple) or len(value) != 3:
                raise ManifestError(
                    f"reference {key!r} is {value!r}; expected [url, offset, length]"
                )
            url, offset, length = value
            if int(offset) < 0 or int(length) < 0:
                raise ManifestError(f"reference {key!r} has a negative offset or length")
            url_index[coords] = urls.setdefault(str(url), len(urls))
            offsets[coords] = int(offset)
            lengths[coords] = int(length)
        return cls(tuple(urls), url_index, offsets, lengths, encoding, inline)
