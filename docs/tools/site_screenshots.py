"""Build the docs site, serve it on 127.0.0.1 and look at it with Debian's headless Chromium.

Screenshots of the getting-started page, the slide tour and the API reference (and any other page
given) are written as PNG files::

    PYTHONPATH=. python docs/tools/site_screenshots.py                 # to build/site-screenshots/
    PYTHONPATH=. python docs/tools/site_screenshots.py --out shots slides/ volumes/

``tests/package/test_site.py`` uses the same helpers to check every page in the browser. Needs
``chromium`` and ``chromium-driver`` (Debian packages) and ``selenium`` (PyPI); nothing is
downloaded, and the browser talks only to the local server.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DICOM_DASK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DICOM_DASK_CHROMEDRIVER", "/usr/bin/chromedriver")
#: The pages the script shoots by default: getting started, the slide tour, the API reference.
DEFAULT_PAGES = ("", "notebooks/slide_tour/", "api/")
WINDOW = (1280, 900)


def build_site(dest: Path) -> Path:
    """``mkdocs build --strict`` of this repository into ``dest`` (raises on any warning; not
    ``--quiet``, which hides the warnings from ``--strict``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(dest)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return dest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 (a free port) for the duration; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@contextlib.contextmanager
def browser(width: int = WINDOW[0], height: int = WINDOW[1]) -> Iterator:
    """Debian's Chromium, headless, driven by its chromedriver (selenium), with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


#: Scrolls through the page (so that lazily loaded images load), waits for the images, then
#: reports what the checks need.
_INSPECT = """
const done = arguments[arguments.length - 1];
const step = Math.max(200, window.innerHeight);
for (let y = 0; y < document.body.scrollHeight; y += step) { window.scrollTo(0, y); }
window.scrollTo(0, 0);
const deadline = Date.now() + 15000;
function report() {
  const images = Array.from(document.images);
  const pending = images.filter(i => !i.complete);
  if (pending.length && Date.now() < deadline) { setTimeout(report, 100); return; }
  const article = document.querySelector("article") || document.body;
  done({
    title: document.title,
    text: article.innerText,
    html: article.innerHTML,
    images: images.map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth,
                             complete: i.complete, top: i.getBoundingClientRect().top})),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    overflowing: Array.from(document.querySelectorAll("article pre > code"))
      .filter(c => c.scrollWidth > c.clientWidth + 1)
      .map(c => c.innerText.slice(0, 80)),
    viewport: window.innerHeight,
  });
}
report();
"""


def inspect(driver, url: str) -> dict:
    """Load ``url`` and return its title, text, images, links and overflowing code blocks."""
    driver.get(url)
    driver.set_script_timeout(30)
    return driver.execute_async_script(_INSPECT)


def screenshot(driver, url: str, path: Path, *, full_page: bool = False) -> Path:
    """Load ``url`` and save what the browser shows (the first screen, or the whole page)."""
    inspect(driver, url)  # loads, and waits for the images
    if full_page:
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(WINDOW[0], min(int(height) + 200, 12000))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    if full_page:
        driver.set_window_size(*WINDOW)
    return path


def page_name(page: str) -> str:
    return page.strip("/").replace("/", "-") or "index"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", default=list(DEFAULT_PAGES), help="site paths")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site-screenshots")
    parser.add_argument("--site", type=Path, help="an already built site (default: build one)")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not one screen")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site or build_site(Path(tmp) / "site")
        with serve(site) as base, browser() as driver:
            for page in args.pages:
                path = args.out / f"{page_name(page)}.png"
                screenshot(driver, base + page.lstrip("/"), path, full_page=args.full_page)
                print("saved", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
