"""The one chain decoder: the direct reader, zarr and the numcodecs form of a chain decode
a chunk alike (every transpose applied), and fail alike on a bad chain or bad bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from dicom_dask import DicomStore
from dicom_dask.chunks.chain import ChunkDecoder
from dicom_dask.chunks.manifest import ChunkManifest
from dicom_dask.chunks.numcodec import DicomChainCodec, decode_chain
from dicom_dask.chunks.reader import ManifestArray
from dicom_dask.errors import CorruptFrameError, ManifestError

SHAPE = (2, 3, 4)
#: Two transposes: the encoded chunk is ``a.transpose(FIRST).transpose(SECOND)``.
FIRST, SECOND = (2, 0, 1), (1, 0, 2)
CHAIN: list[dict[str, Any]] = [
    {"name": "transpose", "configuration": {"order": list(FIRST)}},
    {"name": "transpose", "configuration": {"order": list(SECOND)}},
    {"name": "bytes", "configuration": {"endian": "big"}},
]


def _store(tmp_path: Path, data: bytes, codecs: list[dict[str, Any]]) -> DicomStore:
    path = tmp_path / "chunk.bin"
    path.write_bytes(data)
    one = np.zeros((1, 1, 1), dtype=np.int32)
    manifest = ChunkManifest(
        [str(path)], one, one.astype(np.uint64), np.full((1, 1, 1), len(data), dtype=np.uint64)
    )
    document = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(SHAPE),
        "data_type": "uint16",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(SHAPE)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": {},
    }
    return DicomStore({"": manifest}, {"zarr.json": document})


def _reader(store: DicomStore, codecs: list[dict[str, Any]]) -> ManifestArray:
    return ManifestArray(store, "", shape=SHAPE, chunk_shape=SHAPE, dtype=np.uint16, codecs=codecs)


def test_every_transpose_of_a_chain_is_applied(tmp_path: Path) -> None:
    chunk = np.arange(np.prod(SHAPE), dtype=np.uint16).reshape(SHAPE) * 257
    encoded = chunk.transpose(FIRST).transpose(SECOND).astype(">u2").tobytes()
    store = _store(tmp_path, encoded, CHAIN)
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[...], chunk)  # zarr's answer
    np.testing.assert_array_equal(ChunkDecoder(CHAIN, SHAPE, np.uint16)(encoded), chunk)
    np.testing.assert_array_equal(_reader(store, CHAIN)[...], chunk)
    np.testing.assert_array_equal(_reader(store, CHAIN)[1, ::2, 1:3], chunk[1, ::2, 1:3])
    np.testing.assert_array_equal(decode_chain(encoded, CHAIN, SHAPE, np.dtype(np.uint16)), chunk)
    codec = DicomChainCodec(CHAIN, list(SHAPE), "uint16")
    decoded = np.frombuffer(codec.decode(encoded), dtype="<u2").reshape(SHAPE)
    np.testing.assert_array_equal(decoded, chunk)


def test_a_chain_that_cannot_be_decoded_is_a_manifest_error(tmp_path: Path) -> None:
    bad = [*CHAIN[:2], {"name": "bytes"}, {"name": "gzip", "configuration": {"level": 1}}]
    with pytest.raises(ManifestError, match="cannot express the codec chain"):
        ChunkDecoder(bad, SHAPE, np.uint16)
    with pytest.raises(ManifestError, match="cannot express the codec chain"):
        _reader(_store(tmp_path, b"", bad), bad)
    with pytest.raises(ManifestError, match="cannot express the codec chain"):
        DicomChainCodec(bad, list(SHAPE), "uint16")


def test_short_native_bytes_are_a_corrupt_frame_naming_the_chunk(tmp_path: Path) -> None:
    short = bytes(10)  # 24 values of 2 bytes expected
    store = _store(tmp_path, short, CHAIN)
    reader = ManifestArray(
        store,
        "",
        shape=SHAPE,
        chunk_shape=SHAPE,
        dtype=np.uint16,
        codecs=CHAIN,
        manifest=ChunkManifest(
            [str(tmp_path / "chunk.bin")],
            np.zeros((1, 1, 1), dtype=np.int32),
            np.zeros((1, 1, 1), dtype=np.uint64),
            np.full((1, 1, 1), 10, dtype=np.uint64),
        ),
    )
    with pytest.raises(
        CorruptFrameError, match=r"chunk\.bin: chunk \(0, 0, 0\).*expected 48 bytes"
    ):
        reader[...]
    with pytest.raises(CorruptFrameError, match="expected 48 bytes of native pixels"):
        decode_chain(short, CHAIN, SHAPE, np.dtype(np.uint16))
