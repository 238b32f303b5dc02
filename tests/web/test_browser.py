"""The web UI in a real browser: Debian's headless Chromium driven by Selenium through
chromedriver, against the app served by uvicorn on a loopback port.

1. A store filled by the embedded pipeline (``crashfleet run --once``) from the committed real
   dumps: open the clusters page, click through to a cluster and a crash, read the log and the
   findings, set a triage state through the form.
2. A stored crash whose title, module names, comm, host and log carry script tags, attribute
   breakouts, ``javascript:`` links and ANSI escapes: every page renders them as text, and
   the flag the injected script would set stays unset.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import HOSTILE_HOST, PAYLOAD_IMG, PAYLOAD_SCRIPT, fill

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(scripts/setup-system.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(app: Any) -> tuple[str, Any]:
    from crashfleet.wiring.web import serve_in_thread

    port = _free_port()
    server = serve_in_thread(app, "127.0.0.1", port)
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    return f"http://127.0.0.1:{port}", server


@pytest.fixture(scope="module")
def pipeline_site(tmp_path_factory: pytest.TempPathFactory,
                  fixture_dumps: list[tuple[dict[str, object], Path]]) -> Iterator[str]:
    """The embedded pipeline run once over the committed dumps, served by the web UI."""
    root = tmp_path_factory.mktemp("pipeline")
    spool, data = root / "spool", root / "data"
    for m, dump in fixture_dumps:
        host = spool / f"host-{m['boot']}"
        host.mkdir(parents=True, exist_ok=True)
        shutil.copy(dump, host / f"{m['case']}.dump")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env["CRASHFLEET_STORE_URL"] = f"sqlite:///{data / 'crashfleet.sqlite'}"
    r = subprocess.run([sys.executable, "-m", "crashfleet.cli", "--log-level", "warning", "run",
                        "--spool", str(spool), "--data", str(data), "--once",
                        "--metrics-port", "0"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    from crashfleet.wiring.web import build_web_app
    from foundation.settings import Settings

    base, server = _serve(build_web_app(Settings(), data=data))
    yield base
    server.should_exit = True


def _wait_loaded(driver: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def test_click_through_to_a_crash_and_triage(browser: Any, pipeline_site: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(pipeline_site + "/?window=all")
    _wait_loaded(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.clusters tbody tr")
    assert len(rows) >= 2
    uau = next(a for a in browser.find_elements(By.CSS_SELECTOR, "td.title > a")
               if "vendordeferio" in a.text)
    uau.click()
    _wait_loaded(browser)
    assert "/clusters/" in browser.current_url
    assert "by kernel" in browser.page_source
    kernels = browser.find_element(By.CSS_SELECTOR, "section.hists").text
    assert "5.10.0-32-cloud-amd64" in kernels and "6.1.0-56-cloud-amd64" in kernels
    assert "by architecture" in kernels and "x86_64" in kernels
    # The signature explanation the analyzer stored with the newest crash, folded.
    explanation = browser.find_element(By.CSS_SELECTOR, "#explanation details")
    explanation.find_element(By.TAG_NAME, "summary").click()
    assert '"signature": {' in explanation.find_element(By.CSS_SELECTOR, "pre.json").text
    cluster_url = browser.current_url
    browser.find_element(By.CSS_SELECTOR, "a[href^='/crashes/']").click()
    _wait_loaded(browser)
    assert "/crashes/" in browser.current_url
    oops = browser.find_element(By.CSS_SELECTOR, "#log pre.oops").text
    # the cluster holds the x86_64 and the arm64 crash of this bug; the newest is either
    assert "BUG: unable to handle page fault" in oops \
        or "Unable to handle kernel paging request" in oops, oops
    assert "use-after-module-unload" in browser.find_element(By.TAG_NAME, "main").text
    assert "vendordeferio" in browser.find_element(By.CSS_SELECTOR, "section.facts").text
    # The vendored script runs under the CSP: it folds out the whole log.
    folded = browser.find_elements(By.CSS_SELECTOR, "#log details")
    assert folded and not any(d.get_attribute("open") for d in folded)
    browser.find_element(By.CSS_SELECTOR, "button.toggle").click()
    assert all(d.get_attribute("open") is not None for d in folded)

    browser.get(cluster_url)
    _wait_loaded(browser)
    browser.find_element(By.CSS_SELECTOR, "input[name=state][value=fixed]").click()
    browser.find_element(By.NAME, "fixed_in").send_keys("6.1.0-57-cloud-amd64")
    browser.find_element(By.NAME, "note").send_keys("fixed by vendor 2.1")
    browser.find_element(By.NAME, "who").send_keys("oncall")
    browser.find_element(By.CSS_SELECTOR, "form.triage-form button[type=submit]").click()
    _wait_loaded(browser)
    triage = browser.find_element(By.ID, "triage").text
    assert "fixed 6.1.0-57-cloud-amd64" in triage and "oncall" in triage
    assert "fixed by vendor 2.1" in triage


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from ingest import LocalObjectStore
    from store import CrashStore
    from web import create_app

    root = tmp_path_factory.mktemp("hostile")
    store = CrashStore(f"sqlite:///{root / 'db.sqlite'}")
    store.migrate()
    filled = fill(store, LocalObjectStore(root / "objects"))
    base, server = _serve(create_app(store, objects=filled.objects))
    yield base, filled
    server.should_exit = True
    store.dispose()


def test_hostile_text_renders_as_text(browser: Any, hostile_site: tuple[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    base, filled = hostile_site
    urls = ["/?window=all", f"/clusters/{filled.hostile_cluster}",
            f"/crashes/{filled.hostile_event}", "/hosts/" + quote(HOSTILE_HOST, safe="")]
    for url in urls:
        browser.get(base + url)
        _wait_loaded(browser)
        assert browser.execute_script("return typeof window.__pwned") == "undefined", url
        # Only the vendored script, no injected elements, no javascript: links.
        scripts = [s.get_attribute("src") for s in browser.find_elements(By.TAG_NAME, "script")]
        assert scripts == [base + "/static/app.js"], url
        assert browser.find_elements(By.CSS_SELECTOR, "img") == [], url
        assert browser.find_elements(By.CSS_SELECTOR, "a[href^='javascript']") == [], url
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "\x1b" not in text
    # The crash page shows the payloads as the text they are.
    browser.get(base + f"/crashes/{filled.hostile_event}")
    _wait_loaded(browser)
    title = browser.find_element(By.CSS_SELECTOR, "h1.title").text
    assert PAYLOAD_SCRIPT in title and PAYLOAD_IMG in title
    browser.find_element(By.CSS_SELECTOR, "button.toggle").click()
    log = browser.find_element(By.ID, "log").text
    assert PAYLOAD_SCRIPT in log and "\\x1b[31mred" in log
    host_link = browser.find_element(By.CSS_SELECTOR, "section.facts a[href^='/hosts/']")
    host_link.click()
    _wait_loaded(browser)
    assert browser.find_element(By.TAG_NAME, "h1").text == f"host {HOSTILE_HOST}"
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
