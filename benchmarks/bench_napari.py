"""Opening a 16k x 16k slide in napari (headless ``ViewerModel``) through the dicom_dask plugin.

Run ``python benchmarks/make_data.py`` first. Two slides:

* **pyramid**: ``slide-bot/level0.dcm`` (16,384 x 16,384, 4,096 JPEG tiles) plus five lower
  levels (8k ... 512) written into a temporary folder with the same slide identity;
* **single level**: ``slide-bot/level0.dcm`` alone.

Each is opened in a fresh Python process (``first``: includes the imports napari and dask
make on their first layer) and then again in the same process (``again``), ``--repeat``
times; the script prints the best and worst of each. napari reads the smallest level whole
for its thumbnail, so the pyramid's cost is its 512 x 512 level and the single level's is
every tile of level 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from pydicom import dcmread, uid

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
import npe2
npe2.PluginManager.instance().discover()
from napari.components import ViewerModel
viewer = ViewerModel()
times = []
for _ in range(2):
    t0 = time.perf_counter()
    [layer] = viewer.open(sys.argv[1], plugin="dicom_dask")
    times.append(time.perf_counter() - t0)
print(json.dumps({"first": times[0], "again": times[1], "levels": len(layer.data)}))
"""


def pyramid(folder: Path, level0: Path) -> Path:
    """``level0`` (symlinked) and five lower JPEG levels of the same slide in ``folder``."""
    sys.path.insert(0, str(HERE))
    from make_data import tissue_tiles

    from dicom_dask.testing import encode_frame, make_slide_dataset

    ref = dcmread(level0, stop_before_pixels=True)
    (folder / "level0.dcm").symlink_to(level0.resolve())
    encoded = [encode_frame(t, uid.JPEGBaseline8Bit) for t in tissue_tiles(64, seed=3)]
    side0 = int(ref.TotalPixelMatrixColumns)
    for k in range(1, 6):
        side = side0 >> k
        n = (side // 256) ** 2
        ds = make_slide_dataset(
            np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (side, side, 3)),
            tile=(256, 256),
            encoded_tiles=[encoded[i % len(encoded)] for i in range(n)],
            pixel_spacing=0.00025 * 2**k,
            container_id=str(ref.ContainerIdentifier),
            frame_of_reference=str(ref.FrameOfReferenceUID),
            study_uid=str(ref.StudyInstanceUID),
        )
        ds.SeriesInstanceUID = ref.SeriesInstanceUID
        ds.save_as(folder / f"level{k}.dcm", enforce_file_format=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--single", action="store_true", help="also the single-level slide")
    args = parser.parse_args()
    level0 = Path(args.data) / "slide-bot" / "level0.dcm"
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"pyramid (6 levels)": str(pyramid(Path(tmp), level0))}
        if args.single:
            cases["single level"] = str(level0)
        for name, path in cases.items():
            runs = []
            for _ in range(args.repeat):
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, path],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            first = [r["first"] for r in runs]
            again = [r["again"] for r in runs]
            print(
                f"{name}: first open {min(first):.2f}-{max(first):.2f} s, "
                f"again {min(again):.2f}-{max(again):.2f} s ({args.repeat} processes)"
            )


if __name__ == "__main__":
    main()
