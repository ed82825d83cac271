"""Make the gallery: every figure stored in the notebooks, as PNG files and a page linking them.

The figures are the notebooks' own stored outputs (made by running them, see
``run_notebooks.py``), so the gallery, the tutorials and the notebooks show the same pictures.
Writes ``docs/images/gallery/<notebook>-<n>.png`` and ``docs/gallery.md``; the napari screenshots
(``napari_screenshot.py``) are added when present. Run it after refreshing the notebooks::

    python docs/tools/gallery.py
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUT = DOCS / "images" / "gallery"

TITLES = {
    "slide_tour": "Slide tour",
    "ct_volume": "Volume tour",
    "cluster_read": "On a cluster",
    "from_other_libraries": "From other libraries",
}
NAPARI = [
    ("napari-slide.png", "napari: the CMU-1 slide opened by the dicom_dask reader"),
    ("napari-ct-slice.png", "napari: the real CT series in LPS millimetres, seen from the feet"),
    ("napari-volume.png", "napari: a CT phantom placed by its affine, 3-D MIP, 50 mm scale bar"),
]


def figures(path: Path) -> list[tuple[str, bytes]]:
    """``(caption, png)`` for each PNG output, captioned by the nearest heading above it."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    caption = TITLES.get(path.stem, path.stem)
    found = []
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            for line in source.splitlines():
                if line.startswith("## "):
                    caption = line[3:].strip()
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                found.append((caption, base64.b64decode("".join(png))))
    return found


def save_thumbnail(png: bytes, path: Path, width: int = 640) -> None:
    """The figure at most ``width`` pixels wide, as an optimised PNG (the tutorials hold the
    full-size one)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    lines = [
        "# Gallery",
        "",
        "Every figure of the [tutorials](notebooks/slide_tour.ipynb), as stored in the notebooks",
        "(they are made by running them on the real CMU-1 slide and CT series of the test data),",
        "and napari showing what the reader opens. Click a picture for the tutorial that makes it.",
        "",
    ]
    total = 0
    for stem, title in TITLES.items():
        path = ROOT / "notebooks" / f"{stem}.ipynb"
        if not path.exists():
            continue
        found = figures(path)
        lines += [f"## {title}", "", '<div class="gallery" markdown>', ""]
        for n, (caption, png) in enumerate(found, 1):
            name = f"{stem}-{n}.png"
            save_thumbnail(png, OUT / name)
            lines += [
                "<figure markdown>",
                f"[![{caption}](images/gallery/{name})](notebooks/{stem}.ipynb)",
                f"<figcaption>{caption}</figcaption>",
                "</figure>",
                "",
            ]
        lines += ["</div>", ""]
        total += len(found)
    shots = [(name, caption) for name, caption in NAPARI if (DOCS / "images" / name).exists()]
    if shots:
        lines += ["## napari", "", '<div class="gallery" markdown>', ""]
        for name, caption in shots:
            lines += [
                "<figure markdown>",
                f"[![{caption}](images/{name})](ecosystem.md)",
                f"<figcaption>{caption}</figcaption>",
                "</figure>",
                "",
            ]
        lines += ["</div>", ""]
    (DOCS / "gallery.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"{total} notebook figures and {len(shots)} napari screenshots in docs/gallery.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
