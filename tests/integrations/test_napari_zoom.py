"""napari, zoomed in on a 16k x 16k slide, reads only the tiles it shows.

A three-level pyramid (16,384², 4,096², 1,024², 256² JPEG tiles, every tile the same
small codestream so the files stay a few MB) opens in napari's Qt-free ``ViewerModel``
through the dicom_dask reader. The camera is set on a 1,024 x 1,024 canvas showing
1,024² pixels of level 0; the draw call a canvas makes then picks level 0 and napari
slices the visible part, which must fetch exactly the tiles under it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import uid

from dicom_dask.chunks.reader import ManifestArray
from dicom_dask.testing import encode_frame, make_slide_dataset

pytest.importorskip("napari")

TILE = 256


def _pyramid(folder: Path) -> None:
    tile = np.full((TILE, TILE, 3), 180, np.uint8)
    tile[::7] = 40  # something to see
    code = encode_frame(tile, uid.JPEGBaseline8Bit)
    for i, side in enumerate((16384, 4096, 1024)):
        n = (side // TILE) ** 2
        ds = make_slide_dataset(
            np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (side, side, 3)),
            tile=(TILE, TILE),
            transfer_syntax=uid.JPEGBaseline8Bit,
            encoded_tiles=[code] * n,
            pixel_spacing=0.00025 * 16384 / side,
            container_id="ZOOM-1",
            frame_of_reference="1.2.826.0.1.3680043.8.498.77",
            study_uid="1.2.826.0.1.3680043.8.498.78",
        )
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.79"  # one slide, three levels
        ds.save_as(folder / f"level{i}.dcm", enforce_file_format=True)


def test_zoomed_camera_fetches_only_the_visible_tiles(tmp_path, monkeypatch) -> None:
    from napari.components import ViewerModel

    from dicom_dask.integrations.napari_reader import read

    _pyramid(tmp_path)
    [(data, meta, _)] = read(str(tmp_path))
    assert [a.shape[:2] for a in data] == [(16384, 16384), (4096, 4096), (1024, 1024)]
    fetched: list[tuple[int, ...]] = []
    original = ManifestArray._fetch

    def counting(self: ManifestArray, wanted: Any) -> list[bytes]:
        fetched.extend(item[0] for item in wanted if self.shape[:2] == (16384, 16384))
        return original(self, wanted)

    monkeypatch.setattr(ManifestArray, "_fetch", counting)
    viewer = ViewerModel()
    layer = viewer.add_image(data, **{k: v for k, v in meta.items() if k != "units"})
    fetched.clear()  # adding the layer shows the lowest level
    # a 1,024 x 1,024 canvas on level-0 pixels [5000, 6024) x [7100, 8124): world in mm
    scale = np.asarray(layer.scale[-2:])
    y0, x0, size = 5000, 7100, 1024
    zoom = 1.0 / scale[0]  # one screen pixel per level-0 pixel
    viewer.camera.zoom = zoom
    viewer.camera.center = tuple((np.array([y0, x0]) + size / 2) * scale)
    corners = np.array([[y0, x0], [y0 + size, x0 + size]]) * scale
    layer._update_draw(
        scale_factor=1 / zoom, corner_pixels_displayed=corners, shape_threshold=(size, size)
    )
    assert layer.data_level == 0
    shown = np.asarray(layer._slice.image.raw)
    (r0, c0), (r1, c1) = layer.corner_pixels[:, :2]
    assert shown.shape[:2] == (r1 - r0 + 1, c1 - c0 + 1)  # corners are inclusive
    # exactly the tiles under the canvas: napari widens the view to whole dask chunks,
    # which for the layer are single tiles
    rows = range(y0 // TILE, (y0 + size) // TILE + 1)
    cols = range(x0 // TILE, (x0 + size) // TILE + 1)
    expected = {(r, c, 0) for r in rows for c in cols}
    assert set(fetched) == expected
    assert len(fetched) == len(expected)
