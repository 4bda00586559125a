"""A real, headless Chromium for the tests: Debian's ``chromium`` driven by its ``chromium-driver``.

Why Selenium: it is the well-kept client for chromedriver, and chromedriver is
what Debian ships next to the browser, so nothing is downloaded (Selenium
Manager is told to stay offline, and the binary and driver paths are given).
Playwright would want its own browser build.

Without the two binaries the tests skip saying how to get them; under
``CI=true`` they fail instead (``.ci/run`` installs them, as it does Prometheus).

Chromium is told to resolve no host but 127.0.0.1 and to skip its background
traffic (updates, sync, hints), so a test page cannot reach the network even
by mistake; ``requests_seen`` reads the DevTools network log to prove the page
did not try.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "chromium"
DRIVER = "chromedriver"
HOW = ("needs Debian's chromium and chromium-driver: "
       "apt-get install -y --no-install-recommends chromium chromium-driver")


def _binary(name: str) -> str | None:
    debian = Path("/usr/bin") / name
    return shutil.which(name) or (str(debian) if debian.exists() else None)


def binaries() -> tuple[str, str]:
    """(chromium, chromedriver), or a skip (locally) / failure (CI) saying how to install them."""
    browser, driver = _binary(CHROMIUM), _binary(DRIVER)
    if browser and driver:
        return browser, driver
    if os.environ.get("CI") == "true":
        pytest.fail(HOW)
    pytest.skip(HOW)


@contextlib.contextmanager
def chromium(width: int = 1000, height: int = 1400) -> Iterator[Any]:
    """A headless Chromium WebDriver with the DevTools performance (network) log on."""
    browser, driver_path = binaries()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps",
                "--disable-features=OptimizationHints,MediaRouter,Translate",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def requests_seen(driver: Any) -> list[str]:
    """URLs the page asked for since the last call (DevTools ``Network.requestWillBeSent``)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def not_blank(png: bytes) -> tuple[int, float]:
    """(distinct colours, share of non-white pixels) of a screenshot."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    pixels = image.width * image.height
    white = sum(n for n, c in colours if c == (255, 255, 255))
    return len(colours), 1 - white / pixels


def screenshot(report: Path, png: Path, width: int = 1000, height: int = 1700) -> None:
    """Save the top ``height`` pixels of ``report`` as rendered by headless Chromium (palette PNG)."""
    from PIL import Image

    with chromium(width, height) as driver:
        driver.get(report.as_uri())
        image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(colors=64).save(png, optimize=True)


def main() -> None:
    """``python -m tests.browser [PNG]``: run the README's example with ``--report``, then screenshot it.

    This is how docs/report.png is made.
    """
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[1]
    png = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "report.png"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        subprocess.run([sys.executable, "-m", "mothership", "loadtest", "run", "-f",
                        str(root / "examples" / "loadtest-local.yaml"), "--demo-target", "--no-live",
                        "--report", str(report)], check=False, timeout=120)
        screenshot(report, png)
    print(png)


if __name__ == "__main__":
    main()
