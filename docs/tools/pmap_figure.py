"""Make ``docs/images/pmap-over-slide.png``: a patch-score Parametric Map over its slide.

The pipeline of docs/writing.md ("slide -> patch scores -> Parametric Map") on the real
CMU-1-Small-Region slide: patches over tissue, a score per patch, the scores back as a
map, written with ``to_dicom_pmap`` at the map's own spacing. The figure is drawn from
what was *written*: highdicom reads the Parametric Map back, and the map is placed over
level 0 by the file's own origin, orientation and pixel spacing (mapped to level-0
pixels through the slide's affine), not by the arrays in memory. Run::

    python docs/tools/pmap_figure.py [path/to/cmu1_napari]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import highdicom as hd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pydicom

import dicom_dask

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT.parent / "shared" / "data" / "real" / "wsi" / "cmu1_napari"
OUT = ROOT / "docs" / "images" / "pmap-over-slide.png"


def main(source: Path = SOURCE) -> Path:
    slide = dicom_dask.open_slide(source)
    sampler = dicom_dask.PatchSampler(slide, 224, stride=112, mask="tissue", min_coverage=0.3)
    patches = sampler.to_dask()  # (n, 224, 224, 3)
    scores = 1.0 - patches.mean(axis=(1, 2, 3)) / 255.0  # a stand-in "model": darkness
    result = sampler.to_map(scores.astype("float32"))
    with tempfile.TemporaryDirectory() as tmp:
        path = dicom_dask.to_dicom_pmap(
            result, f"{tmp}/pm.dcm", like=slide, lut_label="darkness", progress=False
        )
        ds = pydicom.dcmread(path)
    values = hd.pm.ParametricMap.from_dataset(ds).get_total_pixel_matrix()
    # the map's corners from its own header, in level-0 pixels
    origin = ds.TotalPixelMatrixOriginSequence[0]
    to_slide = hd.spatial.ImageToReferenceTransformer(
        image_position=(
            float(origin.XOffsetInSlideCoordinateSystem),
            float(origin.YOffsetInSlideCoordinateSystem),
            0.0,
        ),
        image_orientation=[float(v) for v in ds.ImageOrientationSlide],
        pixel_spacing=[
            float(v)
            for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        ],
    )
    rows, cols = values.shape
    corners = to_slide(np.array([[-0.5, -0.5], [cols - 0.5, rows - 0.5]]))
    level = slide.pyramid[0]
    (c0, r0), (c1, r1) = level.map_slide_coordinates_to_pixel_indices(corners)
    picture = level.array.compute()
    fig, ax = plt.subplots(1, 2, figsize=(10, 6.4), constrained_layout=True)
    ax[0].imshow(picture)
    ax[0].set_title("CMU-1-Small-Region, level 0")
    ax[1].imshow(picture)
    shown = ax[1].imshow(
        np.ma.masked_invalid(values),
        extent=(c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5),
        cmap="magma",
        alpha=0.6,
        interpolation="nearest",
    )
    ax[1].set_title(f"Parametric Map {cols} x {rows} read back, placed by its header")
    fig.colorbar(shown, ax=ax[1], shrink=0.7, label="patch score (darkness)")
    for a in ax:
        a.set_axis_off()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    return OUT


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE))
