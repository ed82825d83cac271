"""The docs site: built strictly, no Sphinx role anywhere, and every page right in a real browser.

The browser test serves the built site on 127.0.0.1 and drives Debian's headless Chromium with its
chromedriver (``docs/tools/site_screenshots.py`` holds the helpers): every page loads, every image
on it has loaded (natural width > 0), no page shows a raw ``:role:`` or links to a missing page or
anchor, code blocks fit their column, the getting-started page shows a picture in its first
screen; it saves screenshots of the index and two guide pages.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

pytestmark = [pytest.mark.docs, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "docs" / "tools"
#: A Sphinx role as it shows in a page's text (the backticks become <code>) or in its HTML.
RAW_ROLE_TEXT = re.compile(r"(?<![\w:]):(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):\S")
RAW_ROLE_HTML = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):(?:<code|`)")


def _tool(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_no_sphinx_role_in_sources() -> None:
    """Docstrings use Markdown cross-references; ``docs/tools/fix_roles.py`` converts roles."""
    left = _tool("fix_roles").leftover_roles(ROOT)
    assert not left, "run `python docs/tools/fix_roles.py`:\n" + "\n".join(left)


def test_fix_roles_converts_and_is_idempotent(tmp_path: Path) -> None:
    """The script on a package with roles: links for rendered targets, code for the others."""
    pytest.importorskip("griffe", reason="docs/tools/fix_roles.py resolves targets with griffe")
    fix_roles = _tool("fix_roles")
    package = tmp_path / "dicom_dask"
    shutil_copy = __import__("shutil").copytree
    shutil_copy(ROOT / "dicom_dask", package)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text("::: dicom_dask.Slide\n\n::: dicom_dask.open_slide\n")
    source = package / "images" / "slide.py"
    text = source.read_text()
    marker = '"""Whole-slide images'
    assert marker in text
    text = text.replace(
        marker,
        '"""See :func:`open_slide`, :meth:`Slide.read_region`, :class:`~dicom_dask.Volume`, '
        ":class:`zarr.Array`.\n\nWhole-slide images",
        1,
    )
    source.write_text(text)
    assert fix_roles.main(["--root", str(tmp_path)]) == 0
    new = source.read_text()
    assert "[`open_slide`][dicom_dask.images.slide.open_slide]" in new
    assert "[`Slide.read_region`][dicom_dask.images.slide.Slide.read_region]" in new
    assert "`Volume`" in new and "[`Volume`]" not in new  # not rendered by this api.md
    assert "`zarr.Array`" in new and "[`zarr.Array`]" not in new  # not ours
    assert not fix_roles.leftover_roles(tmp_path)
    assert fix_roles.main(["--root", str(tmp_path)]) == 0
    assert source.read_text() == new  # idempotent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocs_jupyter")
    pytest.importorskip("mkdocstrings")
    return _tool("site_screenshots").build_site(tmp_path_factory.mktemp("site") / "site")


def _pages(site: Path) -> list[str]:
    skip = {"404.html", "search", "assets"}
    pages = []
    for index in sorted(site.rglob("index.html")):
        rel = index.relative_to(site)
        if rel.parts[0] in skip:
            continue
        pages.append("" if rel.parent == Path(".") else rel.parent.as_posix() + "/")
    return pages


def test_api_page_has_no_raw_role(site: Path) -> None:
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "dicom_dask.open_slide" in html  # the reference rendered
    assert not RAW_ROLE_HTML.findall(html)
    text = re.sub(r"<[^>]+>", "", html)
    assert not RAW_ROLE_TEXT.findall(text)
    # cross-references became links: e.g. a docstring's link to Slide
    assert re.search(r'<a[^>]+href="#dicom_dask\.Slide"', html)


def test_every_page_in_a_real_browser(site: Path, tmp_path: Path) -> None:
    helpers = _tool("site_screenshots")
    if not helpers.have_browser():
        if os.environ.get("DICOM_DASK_REQUIRE_SERVERS"):
            pytest.fail(f"{helpers.CHROMIUM} and {helpers.CHROMEDRIVER} are required")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    pytest.importorskip("selenium")
    pages = _pages(site)
    assert {"", "api/", "gallery/", "notebooks/slide_tour/"} <= set(pages)
    shots = Path(os.environ.get("DICOM_DASK_SITE_SHOTS", tmp_path / "shots"))
    problems: list[str] = []
    images = 0
    with helpers.serve(site) as base, helpers.browser() as driver:
        for page in pages:
            url = base + page
            seen = helpers.inspect(driver, url)
            where = f"/{page}"
            if "404" in seen["title"] or "Error response" in seen["title"]:
                problems.append(f"{where}: did not load ({seen['title']})")
            for image in seen["images"]:
                images += 1
                if not (image["complete"] and image["width"] > 0):
                    problems.append(f"{where}: image not loaded: {image['src'][:100]}")
            for role in RAW_ROLE_TEXT.findall(seen["text"]) + RAW_ROLE_HTML.findall(seen["html"]):
                problems.append(f"{where}: raw Sphinx role {role!r}")
            for code in seen["overflowing"]:
                problems.append(f"{where}: code block wider than its column: {code!r}")
            for link in seen["links"]:
                problem = _broken(site, base, link)
                if problem:
                    problems.append(f"{where}: broken link {link} ({problem})")
            if page == "":
                first_screen = [i for i in seen["images"] if 0 <= i["top"] < seen["viewport"]]
                if not first_screen:
                    problems.append("getting started: no picture in the first screen")
        for page in ("", "slides/", "volumes/"):
            helpers.screenshot(driver, base + page, shots / f"{helpers.page_name(page)}.png")
    assert not problems, "\n".join(sorted(set(problems)))
    assert images >= 20  # the notebooks' figures, the gallery, the napari screenshots
    for name in ("index", "slides", "volumes"):
        assert (shots / f"{name}.png").stat().st_size > 10_000


_anchors: dict[Path, set[str]] = {}


def _broken(site: Path, base: str, link: str) -> str | None:
    """Why an internal link is broken (missing file or anchor), or None; others are not checked."""
    if not link.startswith(base):
        return None  # another site: no network here
    url, fragment = urldefrag(link)
    path = site / unquote(urlparse(url).path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    if not path.exists():
        return "no such page"
    if fragment and path.suffix == ".html":
        if path not in _anchors:
            html = path.read_text(encoding="utf-8")
            _anchors[path] = set(re.findall(r'\sid="([^"]+)"', html))
        if unquote(fragment) not in _anchors[path]:
            return f"no anchor #{fragment}"
    return None
