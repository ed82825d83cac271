"""Generate the benchmark inputs (nothing is downloaded).

* ``tiles-jpeg-4096.dcm``: 4,096 JPEG baseline tiles of 256 x 256 RGB (a 16k x 16k level), BOT.
* ``tiles-jpeg-4096-nobot.dcm``: the same tiles with an empty Basic Offset Table.
* ``native-u16-1024.dcm``: 1,024 native frames of 256 x 256 uint16.
* ``slide-bot/level0.dcm``, ``slide-nobot/level0.dcm``: the same 4,096 tiles as a
  16,384 x 16,384 TILED_FULL VL Whole Slide Microscopy level (with / without BOT).
* ``ct-300/``: a CT series of 300 single-frame files, 512 x 512, 12 of 16 bits stored
  (unsigned, as most scanners write CT), shuffled names, rescale to Hounsfield units.
* ``ct-300-jpegls/``: the same series in JPEG-LS Lossless, as archives often store CT.
* ``slide-icc/level0.dcm``: the 4,096-tile level with an sRGB ICC profile in its optical path.
* ``sparse-100k.dcm``: a TILED_SPARSE instance of 100,172 native 8 x 8 tiles in
  shuffled order, with its Per-Frame Functional Groups (``--sparse``).
* ``codecs/<codec>/level0.dcm`` (``--codecs``): one 4,096 x 4,096 RGB level of 256
  tiles of 256 x 256 per codec: ``jpeg`` (baseline, quality 90), ``j2k`` (JPEG 2000
  lossless), ``htj2k`` (HTJ2K lossless), ``jpegls`` (JPEG-LS lossless), ``rle``; with
  a Basic Offset Table. Only these are written with ``--codecs-only``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pydicom import uid

from dicom_dask.testing import encode_frame, make_slide_dataset, write_dicom, write_series

HERE = Path(__file__).resolve().parent


def tissue_tiles(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """Smooth, textured RGB tiles that compress like stained tissue (~15-25 KB each)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        fx, fy = rng.uniform(0.01, 0.06, 2).tolist()
        phase = rng.uniform(0, 6.28)
        base = 170 + 50 * np.sin(fx * xx + phase) * np.cos(fy * yy)
        noise = rng.normal(0, 6, (size, size)).astype(np.float32)
        out[i, ..., 0] = np.clip(base + noise + 30, 0, 255)
        out[i, ..., 1] = np.clip(base * 0.7 + noise, 0, 255)
        out[i, ..., 2] = np.clip(base * 0.9 + noise + 10, 0, 255)
    return out


#: ``--codecs`` slides: name -> transfer syntax (all lossless but JPEG baseline)
CODEC_SYNTAXES = {
    "jpeg": uid.JPEGBaseline8Bit,
    "j2k": uid.JPEG2000Lossless,
    "htj2k": uid.HTJ2KLossless,
    "jpegls": uid.JPEGLSLossless,
    "rle": uid.RLELossless,
}


def encode_tile(tile: np.ndarray, name: str) -> bytes:
    """One RGB tile in codec ``name`` (an encoder other than the decoders under test
    where one is installed: OpenJPEG/OpenJPH through imagecodecs for J2K/HTJ2K)."""
    import imagecodecs

    if name == "j2k":
        return bytes(imagecodecs.jpeg2k_encode(tile, level=0, codecformat="J2K", reversible=True))
    if name == "htj2k":
        return bytes(imagecodecs.htj2k_encode(tile, reversible=True))
    return encode_frame(tile, CODEC_SYNTAXES[name])


def write_codec_slides(out: Path, side: int = 4096) -> None:
    """The ``--codecs`` slides (see the module docstring)."""
    n = (side // 256) ** 2
    tiles = tissue_tiles(n, seed=5)
    for name, syntax in CODEC_SYNTAXES.items():
        folder = out / "codecs" / name
        folder.mkdir(parents=True, exist_ok=True)
        ds = make_slide_dataset(
            np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (side, side, 3)),
            tile=(256, 256),
            transfer_syntax=syntax,
            offset_table="bot",
            encoded_tiles=[encode_tile(t, name) for t in tiles],
            container_id=f"BENCH-{name.upper()}",
            frame_of_reference="1.2.826.0.1.3680043.8.498.2",
        )
        if name in ("j2k", "htj2k"):  # the reversible colour transform is in the codestream
            ds.PhotometricInterpretation = "YBR_RCT"
        ds.save_as(folder / "level0.dcm", enforce_file_format=True)
        size = (folder / "level0.dcm").stat().st_size / 2**20
        print("wrote", folder / "level0.dcm", f"{size:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(HERE / "data"))
    parser.add_argument("--tiles", type=int, default=4096)
    parser.add_argument("--sparse", action="store_true", help="also the 100k-tile sparse file")
    parser.add_argument("--codecs", action="store_true", help="also the per-codec slides")
    parser.add_argument("--codecs-only", action="store_true", help="only the per-codec slides")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.codecs or args.codecs_only:
        write_codec_slides(out)
        if args.codecs_only:
            return
    tiles = tissue_tiles(args.tiles)
    encoded = [encode_frame(t, uid.JPEGBaseline8Bit) for t in tiles]
    for table, name in (
        ("bot", f"tiles-jpeg-{args.tiles}.dcm"),
        ("none", f"tiles-jpeg-{args.tiles}-nobot.dcm"),
    ):
        write_dicom(
            out / name,
            tiles,
            transfer_syntax=uid.JPEGBaseline8Bit,
            offset_table=table,
            encoded=encoded,
        )
        print("wrote", out / name, (out / name).stat().st_size // 2**20, "MiB")
    side = round(args.tiles**0.5) * 256
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for table, folder in (("bot", "slide-bot"), ("none", "slide-nobot"), ("bot", "slide-icc")):
        (out / folder).mkdir(exist_ok=True)
        ds = make_slide_dataset(
            np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (side, side, 3)),
            tile=(256, 256),
            transfer_syntax=uid.JPEGBaseline8Bit,
            offset_table=table,
            encoded_tiles=encoded,
            container_id="BENCH-1",
            frame_of_reference="1.2.826.0.1.3680043.8.498.1",
        )
        if folder == "slide-icc":
            ds.OpticalPathSequence[0].ICCProfile = srgb
        ds.save_as(out / folder / "level0.dcm", enforce_file_format=True)
        print("wrote", out / folder / "level0.dcm")
    if args.sparse:
        ds = make_slide_dataset(
            np.broadcast_to(np.zeros((1, 1), np.uint8), (8 * 316, 8 * 317)),
            tile=(8, 8),
            transfer_syntax=uid.ExplicitVRLittleEndian,
            organization="TILED_SPARSE",
            shuffle=0,
        )
        ds.save_as(out / "sparse-100k.dcm", enforce_file_format=True)
        print("wrote", out / "sparse-100k.dcm", ds.NumberOfFrames, "frames")
    ct = np.random.default_rng(2).integers(0, 4096, (300, 512, 512)).astype(np.uint16)
    rescale = {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0, "RescaleType": "HU"}
    extra = [{**rescale, "BitsStored": 12, "HighBit": 11}] * 300
    for folder, syntax in (
        ("ct-300", uid.ExplicitVRLittleEndian),
        ("ct-300-jpegls", uid.JPEGLSLossless),
    ):
        write_series(
            out / folder,
            ct,
            pixel_spacing=(0.7, 0.7),
            shuffle=0,
            prefix="ct",
            extra=extra,
            transfer_syntax=syntax,
        )
        print("wrote", out / folder, "300 files")
    rng = np.random.default_rng(1)
    native = rng.integers(0, 4096, (1024, 256, 256), dtype=np.uint16)
    write_dicom(out / "native-u16-1024.dcm", native)
    print("wrote", out / "native-u16-1024.dcm")


if __name__ == "__main__":
    main()
