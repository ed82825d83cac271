"""Make docs/images/ct-bone-seg.png: a bone mask over the real CT, read back from its SEG.

Run from the repository root: ``python docs/tools/ct_seg_figure.py [real-data folder]``.
It writes the SEG of ``docs/writing.md``'s "CT -> mask -> SEG -> mL" section into a
temporary folder, reads it back with highdicom, prints the volume in mL and draws the
mask read back over the CT's middle slice.
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

import dicom_dask

ROOT = Path(__file__).resolve().parents[2]


def main(real: Path) -> None:
    ct = dicom_dask.open_volume(real / "volume_series" / "ct_3slice")
    hu = ct.transformed()
    bone = hu.array > 300
    with tempfile.TemporaryDirectory() as tmp:
        path = dicom_dask.to_dicom_seg(
            bone, Path(tmp) / "bone.dcm", like=hu, segment_labels=["bone"], progress=False
        )
        volume = hd.seg.segread(path).get_volume()
    mask = volume.array[..., 0]
    voxel_mm3 = abs(np.linalg.det(volume.affine[:3, :3]))
    ml = mask.sum() * voxel_mm3 / 1000.0
    print(f"bone: {int(mask.sum())} voxels of {voxel_mm3:.4f} mm3 = {ml:.2f} mL")
    k = mask.shape[0] // 2
    image = np.asarray(hu.array[k].compute())
    fig, axes = plt.subplots(1, 2, figsize=(9, 5), dpi=100)
    for ax in axes:
        ax.imshow(image, cmap="gray", vmin=-160, vmax=240)
        ax.set_axis_off()
    axes[0].set_title(f"CT slice {k} (HU, window 40/400)")
    overlay = np.ma.masked_where(mask[k] == 0, mask[k])
    axes[1].imshow(overlay, cmap="autumn", alpha=0.6, vmin=0, vmax=1)
    axes[1].set_title(f"bone SEG read back (> 300 HU): {ml:.2f} mL")
    fig.tight_layout()
    out = ROOT / "docs" / "images" / "ct-bone-seg.png"
    fig.savefig(out, bbox_inches="tight", pad_inches=0.1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "real")
