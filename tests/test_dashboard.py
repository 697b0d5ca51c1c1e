"""The dashboard in headless Chromium (Debian's chromium and chromium-driver), served by a real uvicorn server."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.harness import EXAMPLES, wait_for
from tests.test_api import KEY, ApiServer, finished

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromedriver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        "--window-size=1280,1600",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_dashboard_renders_the_stored_articles(service_env, r, worker, browser, tmp_path_factory):
    from selenium.webdriver.common.by import By

    env = {**service_env, "FEEDSIFT_API_KEYS": KEY, "FEEDSIFT_API_PUBLIC_READ": "1"}
    api = ApiServer(env, tmp_path_factory.mktemp("dashboard-api"), "dashboard-api")
    try:
        with api.client() as http:
            for name in ("global-wire.atom", "steppe-herald.xml"):
                body = {"document": (EXAMPLES / name).read_text(), "source": name}
                finished(http, http.post("/feeds", json=body).json()["job"])
            latest = http.get("/articles", params={"limit": 30}).json()["items"]

            browser.get(api.url + "/")
            rows = browser.find_elements(By.CSS_SELECTOR, "#articles tr.article")
            assert [row.get_attribute("data-id") for row in rows] == [a["id"] for a in latest]
            for row, article in zip(rows, latest):
                assert article["title"] in row.text
                assert sorted(b.text for b in row.find_elements(By.CLASS_NAME, "badge")) == sorted(article["topics"])
            duplicate = next(a for a in latest if a["duplicate_of"])
            link = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{duplicate["id"]}"] a[href^="clusters/"]')
            assert link.text == duplicate["duplicate_of"]
            bars = browser.find_elements(By.CSS_SELECTOR, "#tags-chart rect")
            assert len(bars) == 14 * 3 and any(float(b.get_attribute("height")) > 0 for b in bars)
            feeds = browser.find_element(By.ID, "feeds").text
            for feed in http.get("/feeds").json():
                assert feed["id"] in feeds and (feed["title"] or feed["url"]) in feeds
            assert browser.find_elements(By.CSS_SELECTOR, "#clusters a[href^='clusters/']")

            # refreshed live: a feed ingested after the page loaded appears without reloading it
            marker = browser.execute_script("window.loadedOnce = 1; return window.loadedOnce;")
            finished(
                http,
                http.post("/feeds", json={"document": (EXAMPLES / "pitchside.rdf").read_text(), "source": "p"}).json()[
                    "job"
                ],
            )
            newest = http.get("/articles", params={"limit": 1}).json()["items"][0]
            wait_for(
                lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-id="{newest["id"]}"]'),
                timeout=30,
                message="the new article on the page",
            )
            assert browser.execute_script("return window.loadedOnce;") == marker  # the same page, not a reload

        shots = tmp_path_factory.mktemp("screenshots")
        path = shots / "dashboard.png"
        time.sleep(0.5)
        assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000
        print(f"dashboard screenshot: {path}")
    finally:
        api.stop()
