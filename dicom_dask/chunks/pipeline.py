"""``DicomCodecPipeline``: zarr's codec pipeline, with DICOM frames pasted in threads.

zarr's default pipeline (``BatchedCodecPipeline``) decodes chunks in worker threads
but copies every decoded chunk into the output array in its event loop, one chunk
after another. For a level of 4,096 JPEG tiles that copy, with the first touch of
each page of the output, takes as long as half the decoding. zarr 3.4's
``FusedCodecPipeline`` moves the copy into the workers, but only for stores with a
synchronous interface, so kerchunk references (an fsspec store) keep the serial copy,
and older zarr has no such pipeline.

This pipeline is zarr's own for everything except reads of chunks the
[`DicomFrameCodec`][dicom_dask.chunks.codec.DicomFrameCodec] decodes from local
files (a [`DicomStore`][dicom_dask.chunks.store.DicomStore] on the local disk, or
kerchunk references to local files): those are read, decoded and pasted into the
output by ``dicom_dask.config.threads()`` threads, each taking the next chunk when it is done
with one. zarr's extension point selects it, as it does other pipelines::

    zarr.config.set({"codec_pipeline.path": "dicom_dask.chunks.pipeline.DicomCodecPipeline"})

[`zarr_settings`][dicom_dask.chunks.pipeline.zarr_settings] returns that setting.

zarr takes an array's pipeline from its process-wide configuration when it opens the
array; a store or codec cannot carry one. So that every reader of a DICOM-backed array
(``slide.zarr``, ``zarr.open_group(slide.store)``, ``xarray.open_zarr``, kerchunk
references) gets this pipeline without a setting, the codec selects it when zarr opens
such an array while the configuration names zarr's default pipeline
([`use_by_default`][dicom_dask.chunks.pipeline.use_by_default]); a pipeline the user
names (zarr's ``FusedCodecPipeline``, zarrs, ...) is left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from zarr.core.codec_pipeline import BatchedCodecPipeline, fill_value_or_default

from dicom_dask.chunks.codec import DicomFrameCodec, _local_reader
from dicom_dask.config import threads
from dicom_dask.frames import threads as frame_threads

if TYPE_CHECKING:
    from zarr.abc.store import ByteGetter
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import NDBuffer
    from zarr.core.indexing import SelectorTuple

__all__ = ["PIPELINE_PATH", "DicomCodecPipeline", "register", "use_by_default", "zarr_settings"]

#: The value of zarr's ``codec_pipeline.path`` setting that selects this pipeline.
PIPELINE_PATH = "dicom_dask.chunks.pipeline.DicomCodecPipeline"
#: zarr's default ``codec_pipeline.path``: `open_array` replaces only this one.
_ZARR_DEFAULT = "zarr.core.codec_pipeline.BatchedCodecPipeline"

_Item = tuple["ByteGetter", "ArraySpec", "SelectorTuple", "SelectorTuple", bool]
#: Remote chunks handed to the codec at once (a 16k level of 256² tiles: 16 tile rows).
REMOTE_WAVE = 1024


class DicomCodecPipeline(BatchedCodecPipeline):
    """zarr's ``BatchedCodecPipeline``; reads of DICOM frames in local files run in
    worker threads from the file read to the copy into the output.

    Remote DICOM chunks go to the codec in waves of 1,024 chunks, so a
    [`DicomStore`][dicom_dask.chunks.store.DicomStore] merges neighbouring tiles into one
    request. Everything else (other codecs, writes) is zarr's default pipeline unchanged,
    so the setting is safe for every array a process opens.
    """

    async def read(
        self,
        batch_info: Iterable[_Item],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> Any:
        # docstring inherited
        batch = list(batch_info)
        if not self._dicom_frames(batch):
            return await super().read(batch, out, drop_axes)
        readers = [_local_reader(byte_getter) for byte_getter, *_ in batch]
        if any(read is None for read in readers):
            return await self._read_remote(batch, out, drop_axes)
        codec = self.array_bytes_codec
        assert isinstance(codec, DicomFrameCodec)

        def read_one(k: int) -> str:
            byte_getter, spec, chunk_selection, out_selection, _ = batch[k]
            data = readers[k]()  # type: ignore[misc]
            if data is None:
                out[out_selection] = fill_value_or_default(spec)
                return "missing"
            chunk = codec._decode_select(
                data, chunk_selection, spec, contiguous=False, byte_getter=byte_getter
            )
            assert chunk is not None
            if drop_axes:
                chunk = chunk.squeeze(axis=drop_axes)
            out[out_selection] = chunk  # a transposed view is copied once, here
            return "present"

        statuses = await frame_threads.map_in_threads(read_one, len(batch), threads())
        return tuple({"status": status} for status in statuses)

    async def _read_remote(
        self, batch: list[_Item], out: NDBuffer, drop_axes: tuple[int, ...]
    ) -> Any:
        """Chunks from a remote store: the codec gets them in waves of `REMOTE_WAVE`
        (a wave's neighbouring tiles come in one request from a DicomStore), two waves
        in flight, so at most two waves of decoded chunks wait to be copied."""
        if len(batch) <= REMOTE_WAVE:
            return await self.read_batch(batch, out, drop_axes)
        gate = asyncio.Semaphore(2)

        async def wave(part: list[_Item]) -> Any:
            async with gate:
                return await self.read_batch(part, out, drop_axes)

        waves = await asyncio.gather(
            *(wave(batch[i : i + REMOTE_WAVE]) for i in range(0, len(batch), REMOTE_WAVE))
        )
        if any(result is None for result in waves):  # zarr < 3.4 reports nothing
            return None
        return tuple(status for result in waves for status in result)

    def _dicom_frames(self, batch: list[_Item]) -> bool:
        """Whether the DICOM codec alone decodes the chunks of ``batch``."""
        return (
            bool(batch)
            and not self.array_array_codecs
            and not self.bytes_bytes_codecs
            and isinstance(self.array_bytes_codec, DicomFrameCodec)
        )


def zarr_settings() -> dict[str, Any]:
    """zarr settings that read DICOM chunks fastest: this module's pipeline.

    zarr's default pipeline copies each decoded chunk into the output in its event
    loop, one chunk after another (about as long as half the decoding of a level of
    256 x 256 JPEG tiles). With these settings DICOM frames in local files (a
    [`DicomStore`][dicom_dask.chunks.store.DicomStore] or kerchunk references) are
    read, decoded and copied by ``dicom_dask.config.threads()`` threads (zarr's
    ``threading.max_workers`` when set); every other array is read and written by
    zarr's default pipeline, unchanged.

    zarr picks an array's codec pipeline when the array is opened: open the arrays
    inside ``zarr.config.set(...)``; they keep the pipeline afterwards. Arrays of DICOM
    frames need no setting: the codec selects this pipeline as zarr opens them unless
    another pipeline is configured (see
    [`use_by_default`][dicom_dask.chunks.pipeline.use_by_default]); these settings name it
    explicitly, e.g. for a process that also names other pipelines.

    Returns
    -------
    dict
        Settings for ``zarr.config.set``.

    Examples
    --------
    >>> import zarr, dicom_dask
    >>> with zarr.config.set(dicom_dask.zarr_settings()):  # doctest: +SKIP
    ...     level0 = dicom_dask.open_slide("slide/").zarr["0"]
    >>> region = level0[:, :2048, :2048]  # doctest: +SKIP
    """
    register()
    return {"codec_pipeline.path": PIPELINE_PATH}


def open_array(store: Any) -> Any:
    """``zarr.open_array(store, mode="r")``, with this pipeline unless the zarr
    configuration names a pipeline other than zarr's default."""
    import zarr

    if zarr.config.get("codec_pipeline.path") != _ZARR_DEFAULT:
        return zarr.open_array(store, mode="r")
    with zarr.config.set(zarr_settings()):
        return zarr.open_array(store, mode="r")


def use_by_default() -> None:
    """Make this pipeline zarr's configured one if the configuration names zarr's default.

    Called by the [`DicomFrameCodec`][dicom_dask.chunks.codec.DicomFrameCodec] when zarr
    opens an array of DICOM frames (before zarr picks the array's pipeline), so that any
    reader of such an array reads at the decode ceiling without a setting. The change is
    process-wide and harmless to other arrays: for them this pipeline is zarr's default
    one. Any other configured pipeline is kept; ``zarr.config.set`` afterwards (or around
    the opening) chooses another.
    """
    from zarr import config

    if config.get("codec_pipeline.path") == _ZARR_DEFAULT:
        register()
        config.set({"codec_pipeline.path": PIPELINE_PATH})


def register() -> None:
    """Register the pipeline with zarr (done by the entry point; harmless to repeat)."""
    from zarr.registry import register_pipeline

    register_pipeline(DicomCodecPipeline)
