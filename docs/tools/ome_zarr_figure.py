"""Make ``docs/images/ome-zarr-cmu1.png``: CMU-1 -> map_blocks on a 2-process cluster -> OME-Zarr.

The label and darkness maps are computed with ``map_blocks`` over the real CMU-1 slide,
written by a ``LocalCluster``'s workers with ``to_ome_zarr(..., like=slide, levels=3)``,
read back with ngff-zarr, and drawn over the slide with matplotlib in micrometres (the
written scale and translation place every level over the slide).

Usage: ``python docs/tools/ome_zarr_figure.py [--data ../shared/data/real]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "images" / "ome-zarr-cmu1.png"


def tissue_labels(block: np.ndarray) -> np.ndarray:
    """0 background, 1 pale tissue, 2 dark tissue."""
    grey = block.mean(axis=-1)
    return np.select([grey > 215, grey > 150], [0, 1], 2).astype(np.uint8)


def darkness(block: np.ndarray) -> np.ndarray:
    """1 - grey level, a float map in [0, 1]."""
    return (1.0 - block.mean(axis=-1) / 255.0).astype(np.float32)


def _extent(image: object) -> list[float]:
    """matplotlib extent (left, right, bottom, top) in µm of an ngff-zarr image."""
    scale, shift = image.scale, image.translation  # type: ignore[attr-defined]
    h, w = image.data.shape[-2:]  # type: ignore[attr-defined]
    y0, x0 = shift["y"] - scale["y"] / 2, shift["x"] - scale["x"] / 2
    return [x0, x0 + w * scale["x"], y0 + h * scale["y"], y0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data" / "real"))
    args = parser.parse_args()
    import distributed
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import ngff_zarr
    from matplotlib.colors import ListedColormap

    import dicom_dask

    slide = dicom_dask.open_slide(Path(args.data) / "wsi" / "cmu1_napari")
    level0 = slide.levels[0]
    out = Path(tempfile.mkdtemp(prefix="ome-zarr-figure-"))
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        distributed.Client(cluster),
    ):
        labels = level0.map_blocks(tissue_labels, drop_axis=2, dtype=np.uint8)
        dark = level0.map_blocks(darkness, drop_axis=2, dtype=np.float32)
        dicom_dask.to_ome_zarr(labels, out / "labels.ome.zarr", like=slide, levels=3)
        dicom_dask.to_ome_zarr(dark, out / "darkness.ome.zarr", like=slide, levels=3)
    written = {
        name: ngff_zarr.from_ngff_zarr(str(out / f"{name}.ome.zarr"))
        for name in ("labels", "darkness")
    }
    rgb = level0[::4, ::4].compute()
    spacing = [v * 1000 for v in slide.pixel_spacings[0]]
    h, w = level0.shape[:2]
    extent = [-spacing[1] / 2, (w - 0.5) * spacing[1], (h - 0.5) * spacing[0], -spacing[0] / 2]
    fig, axes = plt.subplots(1, 3, figsize=(13, 5.6), sharex=True, sharey=True)
    axes[0].imshow(rgb, extent=extent)
    axes[0].set_title("CMU-1 (DICOM, level 0)")
    lab = written["labels"].images[2]
    axes[1].imshow(rgb, extent=extent)
    colours = ListedColormap([(0, 0, 0, 0), (0.1, 0.6, 1.0, 0.55), (1.0, 0.2, 0.1, 0.65)])
    axes[1].imshow(np.asarray(lab.data), cmap=colours, vmin=0, vmax=2, extent=_extent(lab),
                   interpolation="nearest")  # fmt: skip
    axes[1].set_title("label map, OME-Zarr level 2 (mode)")
    dk = written["darkness"].images[1]
    axes[2].imshow(rgb, extent=extent)
    shown = axes[2].imshow(np.asarray(dk.data), cmap="magma", alpha=0.6, extent=_extent(dk))
    axes[2].set_title("float map, OME-Zarr level 1 (mean)")
    fig.colorbar(shown, ax=axes[2], fraction=0.04, label="darkness")
    for ax in axes:
        ax.set_xlabel("x (µm)")
    axes[0].set_ylabel("y (µm)")
    fig.suptitle(
        "slide -> map_blocks on a 2-process LocalCluster -> to_ome_zarr(like=slide, levels=3)"
    )
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    from PIL import Image

    Image.open(OUT).convert("RGB").quantize(colors=128).save(OUT, optimize=True)  # docs stay small
    print("wrote", OUT)


if __name__ == "__main__":
    main()
