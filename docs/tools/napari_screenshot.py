"""Screenshots of a real napari window showing what the dicom_dask reader opens.

Starts napari (Qt) on an X display, opens a slide and a CT volume through the npe2 reader
(``viewer.open(path, plugin="dicom_dask")``, as File > Open does), and saves the whole window
(layer list and controls included) as PNG files under ``docs/images/``:

* ``napari-slide.png``: the CMU-1 slide (real data) as a multiscale RGB layer;
* ``napari-volume.png``: a CT volume placed by its affine, as a 3-D maximum intensity projection
  with the L/P/S axes and a millimetre scale bar (the 80-slice synthetic phantom of the volume
  tour: the real CT series has only 3 slices);
* ``napari-ct-slice.png``: the real 3-slice CT series, seen from the feet, soft-tissue window.

Needs a Qt binding (``pip install -e '.[screenshots]'``: napari and PyQt5) and a display; on a
machine without one, run it under Debian's Xvfb::

    PYTHONPATH=. xvfb-run -a -s "-screen 0 1600x1000x24" python docs/tools/napari_screenshot.py

Without the real data (``../shared/data/real`` or ``DICOM_DASK_REAL_DATA``) synthetic files
stand in.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images"


def real_data() -> Path | None:
    env = os.environ.get("DICOM_DASK_REAL_DATA")
    root = Path(env) if env else ROOT.parent / "shared" / "data" / "real"
    return root if (root / "MANIFEST.md").exists() else None


def phantom(folder: Path) -> Path:
    """The volume tour's synthetic CT phantom: body, fat, two lungs and a spine, 80 slices."""
    from dicom_dask.testing import series_positions, write_series

    n, size = 80, 192
    zz, yy, xx = np.mgrid[0:n, 0:size, 0:size].astype(np.float32)
    body = ((yy - 96) / 80) ** 2 + ((xx - 96) / 92) ** 2 < 1
    inner = ((yy - 96) / 74) ** 2 + ((xx - 96) / 86) ** 2 < 1
    taper = 1 - 0.25 * np.cos(np.pi * zz / n)
    lungs = (((yy - 86) / (40 * taper)) ** 2 + ((np.abs(xx - 96) - 42) / (26 * taper)) ** 2) < 1
    spine = ((yy - 150) / 14) ** 2 + ((xx - 96) / 14) ** 2 < 1
    hu = np.full(zz.shape, -1000.0)
    hu[body] = -100
    hu[inner] = 40
    hu[lungs & inner] = -850
    hu[spine] = 700
    hu += np.random.default_rng(1).normal(0, 12, hu.shape)
    write_series(
        folder,
        (hu + 1024).clip(0, 4095).astype(np.int16),
        positions=series_positions(n, slice_spacing=2.0),
        pixel_spacing=(0.9, 0.9),
        extra=[{"RescaleSlope": 1.0, "RescaleIntercept": -1024.0}] * n,
    )
    return folder


def synthetic_slide(folder: Path) -> Path:
    from pydicom import uid

    from dicom_dask.testing import write_slide

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:2048, 0:1536]
    tissue = (yy - 1024) ** 2 / 800**2 + (xx - 768) ** 2 / 560**2 < 1
    matrix = np.stack([235 - 60 * tissue, 235 - 130 * tissue, 235 - 50 * tissue], -1)
    write_slide(
        folder / "slide.dcm",
        matrix.astype(np.uint8),
        tile=(256, 256),
        transfer_syntax=uid.JPEGBaseline8Bit,
    )
    return folder


def settle(viewer, seconds: float = 1.5) -> None:
    """Let Qt draw (and the lazy tiles load) before a screenshot."""
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.05)


def close_notifications(viewer) -> None:
    """Close napari's notification toasts (e.g. a Qt binding deprecation) before a screenshot."""
    from qtpy.QtWidgets import QWidget

    for widget in viewer.window._qt_window.findChildren(QWidget):
        if type(widget).__name__ == "NapariQtNotification":
            widget.close()


def shoot(viewer, path: Path) -> None:
    close_notifications(viewer)
    settle(viewer, 0.5)
    viewer.screenshot(str(path), canvas_only=False)
    from PIL import Image  # 256 colours keep the PNG small (a screenshot is mostly flat colour)

    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True
    )


def main() -> int:
    import napari

    OUT.mkdir(parents=True, exist_ok=True)
    data = real_data()
    work = Path(tempfile.mkdtemp())
    slide_path = data / "wsi" / "cmu1_napari" if data else synthetic_slide(work / "slide")
    saved = []

    viewer = napari.Viewer(title="dicom_dask in napari", show=True)
    viewer.window.resize(1400, 900)
    viewer.scale_bar.visible = True
    layers = viewer.open(str(slide_path), plugin="dicom_dask")
    print("slide layers:", [(layer.name, layer.data[0].shape) for layer in layers])
    viewer.reset_view()
    settle(viewer, 3)
    path = OUT / "napari-slide.png"
    shoot(viewer, path)
    saved.append(path)

    if data is not None:
        viewer.layers.clear()
        # 2-D display of the middle slice: the reader orders the world axes like the array's
        # (S, P, L for an axial series), so napari shows rows (P) down and columns (L) across,
        # the radiological view, in mm
        viewer.dims.ndisplay = 2
        layers = viewer.open(str(data / "volume_series" / "ct_3slice"), plugin="dicom_dask")
        viewer.dims.axis_labels = layers[0].metadata["world_axes"]
        viewer.axes.visible = True
        viewer.scale_bar.unit = "mm"
        layer = layers[0]
        print("CT layer:", layer.name, layer.data.shape, layer.data.dtype)
        low, high = -160, 240  # soft-tissue window (stored values + intercept -1024 below)
        intercept = -1024 if np.issubdtype(layer.data.dtype, np.integer) else 0
        layer.contrast_limits = (low - intercept, high - intercept)
        viewer.reset_view()
        settle(viewer)
        path = OUT / "napari-ct-slice.png"
        shoot(viewer, path)
        saved.append(path)

    viewer.layers.clear()
    viewer.dims.ndisplay = 3
    layers = viewer.open(str(phantom(work / "ct")), plugin="dicom_dask")
    viewer.dims.axis_labels = layers[0].metadata["world_axes"]
    viewer.axes.visible = True
    viewer.scale_bar.unit = "mm"
    layer = layers[0]
    print("volume layer:", layer.name, layer.data.shape)
    print(np.round(layer.affine.affine_matrix, 3))
    # the reader shows CT in Hounsfield units (stored values if it could not rescale)
    offset = 0 if np.issubdtype(layer.data.dtype, np.floating) else 1024
    layer.contrast_limits = (offset - 1000, offset + 900)
    layer.rendering = "mip"
    viewer.reset_view()
    viewer.camera.angles = (-35, 30, 70)
    viewer.camera.zoom *= 0.6
    settle(viewer, 2)
    path = OUT / "napari-volume.png"
    shoot(viewer, path)
    saved.append(path)

    viewer.close()
    for path in saved:
        print("saved", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
