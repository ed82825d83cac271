"""Read chunks straight from a manifest: the path dask takes for ``.array``.

zarr's per-chunk pipeline costs about as much as decoding a small tile, so the
dask graph reads through this array-like instead: the chunks a task touches are
fetched together (merged byte ranges, concurrent requests) and decoded with the same codec
configuration zarr would use. Tests prove both paths give identical pixels.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from fsspec.implementations.local import LocalFileSystem

from dicom_dask.chunks.chain import ChunkDecoder
from dicom_dask.chunks.codec import EdgeCell
from dicom_dask.chunks.decoders import correct_unused_bits
from dicom_dask.chunks.manifest import ChunkManifest, ChunkRef
from dicom_dask.chunks.selection import Axis, normalize, place
from dicom_dask.chunks.store import DicomStore
from dicom_dask.enums import ITEM_TAG, FrameEncoding
from dicom_dask.errors import CorruptFrameError, ReadError, StaleIndexError
from dicom_dask.frames.fetch import call_fs, check_descriptor
from dicom_dask.frames.threads import share

__all__ = ["ChunkDecoder", "FrameLabel", "ManifestArray"]

#: A chunk to read: grid coordinates, reference, part of the chunk, part of the output.
_Wanted = tuple[tuple[int, ...], ChunkRef, tuple[Any, ...], tuple[Any, ...]]

#: Chunks per unit of work when a read decodes in several threads.
BATCH = 16


class FrameLabel:
    """Names the chunk at ``coords`` by its frames (picklable, unlike a lambda)."""

    def __init__(self, frames_per_chunk: int) -> None:
        self.k = int(frames_per_chunk)

    def __call__(self, coords: tuple[int, ...]) -> str:
        first = coords[0] * self.k
        return f"frame {first}" if self.k == 1 else f"frames {first}-{first + self.k - 1}"


class ManifestArray:
    """A read-only NumPy-like array over one array of a
    [`DicomStore`][dicom_dask.chunks.store.DicomStore].

    ``__getitem__`` takes what dask passes to an array-like after fusing a user's
    selection into its read (integers, slices with any step, integer arrays,
    ``Ellipsis``; axes are indexed independently) and returns a NumPy array, reading
    only the chunks the selection touches.
    """

    #: Name of the dask array built over this reader, when one is (set by the builder).
    array_name: str = ""

    def __init__(
        self,
        store: DicomStore,
        path: str,
        *,
        shape: tuple[int, ...],
        chunk_shape: tuple[int, ...],
        dtype: Any,
        codecs: list[dict[str, Any]],
        fill_value: Any = 0,
        label: Callable[[tuple[int, ...]], str] | None = None,
        manifest: ChunkManifest | None = None,
        threads: int = 1,
    ) -> None:
        self.store = store
        self.path = path
        self.shape = tuple(shape)
        self.chunk_shape = tuple(chunk_shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.fill_value = fill_value
        if manifest is None:
            manifest = store.manifests[DicomStore._norm(path)]
        self.manifest: ChunkManifest = manifest
        self.decoder = ChunkDecoder(codecs, self.chunk_shape, self.dtype)
        self._label = label
        #: Threads decoding the chunks of one ``__getitem__`` (the codecs release the GIL).
        self.threads = int(threads)

    def __repr__(self) -> str:
        return f"ManifestArray(shape={self.shape}, chunks={self.chunk_shape}, dtype={self.dtype})"

    def label(self, coords: tuple[int, ...]) -> str:
        """A human name for the chunk at ``coords`` (e.g. ``"frame 12"``)."""
        if self._label is not None:
            return self._label(coords)
        return f"chunk {coords}"

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)

    def read(self, key: Any, out: np.ndarray | None = None) -> np.ndarray:
        """``self[key]``, written into ``out`` when given (C-contiguous, the selection's
        shape and this array's dtype): a caller can reuse one scratch buffer.

        ``key`` indexes each axis independently (see
        [`normalize`][dicom_dask.chunks.selection.normalize]): integers drop an axis;
        slices may have any step; 1-D integer (or boolean) arrays pick positions. Only
        the chunks holding selected elements are fetched and decoded.
        """
        axes = [Axis(k) for k in normalize(key, self.shape)]
        full_shape = tuple(a.n for a in axes)
        out_shape = tuple(a.n for a in axes if not a.drop)
        if out is not None and (out.shape != out_shape or out.dtype != self.dtype):
            raise ValueError(
                f"out has shape {out.shape} and dtype {out.dtype}, expected {out_shape} "
                f"and {self.dtype}"
            )
        if out is None:
            out = np.empty(out_shape, dtype=self.dtype)
        if 0 in full_shape:
            return out
        # dropped axes kept (length 1) while filling: a view of ``out``, never a copy
        full = np.expand_dims(out, tuple(i for i, a in enumerate(axes) if a.drop))
        runs = [a.runs(c) for a, c in zip(axes, self.chunk_shape, strict=True)]
        wanted: list[_Wanted] = []
        missing = False
        for combo in itertools.product(*runs):
            coords = tuple(r[0] for r in combo)
            ref = self.manifest.get(coords)
            if ref is not None:
                src = tuple(r[1] for r in combo)
                dst = tuple(r[2] for r in combo)
                wanted.append((coords, ref, src, dst))
            else:
                missing = True
        # every output element is written by a present chunk unless one is missing
        if missing:
            full.fill(self.fill_value)

        def paste(item: _Wanted, data: bytes) -> None:
            coords, ref, src, dst = item
            try:
                if (
                    len(data) != ref.length
                    or (ref.encoding is FrameEncoding.ITEMS and data[:4] != ITEM_TAG)
                    or ref.encoding is FrameEncoding.WADO
                ):
                    ref.check(data, self.label(coords))
                chunk = self.decoder(data, edge=lambda: self._edge_cell(coords, ref))
            except CorruptFrameError as exc:
                if ref.url and ref.url in str(exc):
                    raise
                raise CorruptFrameError(
                    f"{ref.url or 'inline data'}: {self.label(coords)} "
                    f"({ref.length} bytes at offset {ref.offset}): {exc}"
                ) from exc
            place(full, dst, chunk, src)

        def work(batch: list[_Wanted]) -> None:
            if self.decoder.direct:
                batch = self._read_direct(batch, full)
            for item, data in zip(batch, self._fetch(batch), strict=True):
                paste(item, data)

        if self.threads > 1 and len(wanted) > 1 and self._remote(wanted):
            # remote: every byte in one call of merged, concurrent requests, then decode
            fetched = dict(enumerate(self._fetch(wanted)))
            size = max(1, min(BATCH, -(-len(wanted) // self.threads)))

            def decode(lo: int) -> None:
                for i in range(lo, min(lo + size, len(wanted))):
                    paste(wanted[i], fetched.pop(i))

            share(decode, list(range(0, len(wanted), size)), self.threads)
        elif self.threads > 1 and len(wanted) > 1:
            # local: each unit reads and decodes its own chunks, reads overlap decoding
            size = max(1, min(BATCH, -(-len(wanted) // self.threads)))
            share(work, [wanted[i : i + size] for i in range(0, len(wanted), size)], self.threads)
        else:
            work(wanted)
        return out

    def _edge_cell(self, coords: tuple[int, ...], ref: ChunkRef) -> EdgeCell:
        """Where chunk ``coords`` lies, for a frame that decodes cropped."""
        valid = tuple(
            max(0, min(c, n - i * c))
            for i, c, n in zip(coords, self.chunk_shape, self.shape, strict=True)
        )
        where = f"{self.label(coords)} ({ref.length} bytes at offset {ref.offset})"
        return EdgeCell(valid, self.fill_value, ref.url or "inline data", where)

    def is_local(self) -> bool:
        """Whether every chunk lies in a file on the local disk (or inline)."""
        wado = (self.manifest.encoding == FrameEncoding.WADO.value).any()
        return not wado and self._on_local_disk(self.manifest.urls)

    def _remote(self, wanted: list[_Wanted]) -> bool:
        """Whether some of ``wanted`` lie on a filesystem other than the local disk."""
        if any(w[1].encoding is FrameEncoding.WADO for w in wanted):
            return True
        return not self._on_local_disk({w[1].url for w in wanted if w[1].url is not None})

    def _on_local_disk(self, urls: Iterable[str]) -> bool:
        return all(type(self.store.filesystem(u)[0]) is LocalFileSystem for u in urls)

    def _read_direct(self, batch: list[_Wanted], out: np.ndarray) -> list[_Wanted]:
        """Read native chunks of local files straight into ``out``; return the others.

        A chunk qualifies when the selection takes all of it (step-1 slices) and its
        place in ``out`` is contiguous: ``os.preadv`` then fills it with no
        intermediate copy.
        """
        rest = []
        fds: dict[str, int] = {}
        try:
            for item in batch:
                coords, ref, src, dst = item
                target = None
                whole = all(
                    isinstance(s, slice) and (s.start, s.stop, s.step) == (0, size, 1)
                    for s, size in zip(src, self.chunk_shape, strict=True)
                )
                if (
                    whole
                    and ref.url is not None
                    and ref.encoding is FrameEncoding.RAW
                    and all(isinstance(d, slice) for d in dst)
                ):
                    view = out[dst]
                    if view.flags.c_contiguous and view.nbytes == ref.length:
                        target = view
                if target is None:
                    rest.append(item)
                    continue
                assert ref.url is not None
                fs, path = self.store.filesystem(ref.url)
                if type(fs) is not LocalFileSystem:
                    rest.append(item)
                    continue
                if path not in fds:
                    fds[path] = call_fs(ref.url, os.open, path, os.O_RDONLY)
                    end = ref.offset + ref.length
                    version = self.store.version(ref.url)
                    check_descriptor(fds[path], ref.url, version, ref.offset, end)
                got = call_fs(
                    ref.url, os.preadv, fds[path], [target.reshape(-1).view(np.uint8)], ref.offset
                )
                if got != ref.length:
                    raise CorruptFrameError(
                        f"{ref.url}: {self.label(coords)}: expected {ref.length} bytes at "
                        f"offset {ref.offset}, got {got}"
                    )
                if self.decoder.shift:
                    correct_unused_bits(target, self.decoder.shift)
        finally:
            for fd in fds.values():
                os.close(fd)
        return rest

    def _fetch(self, wanted: Sequence[_Wanted | tuple[tuple[int, ...], ChunkRef]]) -> list[bytes]:
        """Read the bytes of ``wanted`` references with
        [`DicomStore.fetch_refs`][dicom_dask.chunks.store.DicomStore.fetch_refs]; a failed
        request's error names the chunks it held."""
        try:
            return self.store.fetch_refs([item[1] for item in wanted])
        except (ReadError, StaleIndexError) as exc:
            held = getattr(exc, "requests", None)
            if not held:
                raise
            first, last = wanted[held[0]][0], wanted[held[-1]][0]
            what = (
                self.label(first) if first == last else f"{self.label(first)} to {self.label(last)}"
            )
            cls = StaleIndexError if isinstance(exc, StaleIndexError) else ReadError
            raise cls(f"{exc} (needed for {what})") from exc
