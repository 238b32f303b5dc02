#!/usr/bin/env python3
"""Screenshots of the web UI's clusters, cluster and crash pages (docs/ui/*.png).

    .venv/bin/python scripts/ui-screenshots.py --data DIR [--out docs/ui]

DIR is an embedded run's data directory (``crashfleet run --data DIR --once`` on the
committed dumps, as ``make demo`` does). The app is served on a free loopback port and
Debian's headless Chromium (/usr/bin/chromium + chromedriver) takes the pictures.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def chrome(user_dir: str, width: int = 1400, height: int = 1000):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={user_dir}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def full_page(driver, path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight,"
        " document.querySelector('footer').getBoundingClientRect().bottom + window.scrollY)")
    # The window includes browser chrome the viewport does not: grow until the page fits.
    for _ in range(3):
        inner = driver.execute_script("return window.innerHeight")
        outer = driver.get_window_size()["height"]
        driver.set_window_size(1400, min(int(height) + 8 + outer - inner, 3000))
    driver.save_screenshot(str(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "ui")
    args = ap.parse_args()
    from selenium.webdriver.common.by import By

    from crashfleet.wiring.web import build_web_app, serve_in_thread
    from foundation.settings import Settings

    port = free_port()
    server = serve_in_thread(build_web_app(Settings(), data=args.data), "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        driver = chrome(profile)
        try:
            driver.get(base + "/?window=all")
            full_page(driver, args.out / "clusters.png")
            driver.get(driver.find_element(By.CSS_SELECTOR, "table.clusters td.title > a")
                       .get_attribute("href"))
            full_page(driver, args.out / "cluster.png")
            driver.get(driver.find_element(By.CSS_SELECTOR, "a[href^='/crashes/']")
                       .get_attribute("href"))
            full_page(driver, args.out / "crash.png")
        finally:
            driver.quit()
            server.should_exit = True
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
