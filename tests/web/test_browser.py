"""The dashboard in a real browser: `govssl serve` in a subprocess over a store holding a passing,
a blocked and a waived audit, driven by Selenium through Debian's Chromium (headless) and its
chromedriver. No browser is downloaded: without both installed the tests fail (CI installs them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.web.conftest import SCRIPT

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120


def start_server(db: str, *extra: str) -> tuple[subprocess.Popen, str]:
    """`govssl serve --port 0` in a subprocess; returns it and its base URL (read from its start line)."""
    proc = subprocess.Popen([sys.executable, "-m", "govssl.cli", "serve", "--db", db, "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"read-only at (http://127\.0\.0\.1:\d+/)", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise AssertionError(f"govssl serve did not start: {''.join(lines)}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(web_store):
    proc, url = start_server(web_store["db"])
    yield url
    stop(proc)


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    for path, package in ((browser, "chromium"), (driver, "chromium-driver")):
        if not Path(path).is_file():
            pytest.fail(f"{path} not found: install Debian's {package} (.ci/run does)")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1800", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def assert_nothing_from_outside(driver, base: str) -> None:
    origin = urlparse(base)
    for url in requested_urls(driver):
        parsed = urlparse(url)
        if parsed.scheme in ("data", "about", "blob"):
            continue
        assert (parsed.scheme, parsed.hostname, parsed.port) == (origin.scheme, origin.hostname, origin.port), url
    html = driver.page_source
    assert not re.search(r'(src|href|action)="(https?:)?//', html), "a page links outside the dashboard"


def mark_document(driver) -> str:
    """Put a fresh mark on the page shown now; ``new_document_loaded`` waits for it to go."""
    token = uuid.uuid4().hex
    driver.execute_script("window.__testMark = arguments[0]", token)
    return token


def new_document_loaded(token: str):
    """A wait condition: the page marked with ``token`` has been replaced and the new one has loaded.

    Asked while the browser navigates, chromedriver can answer a query about the old page's
    elements with a generic error ("Node with given id does not belong to the document")
    instead of a stale-element error, so the wait looks at a mark on the window rather than
    at an old element. A script that fails mid-navigation just means "not yet". The mark is
    unique, so a page brought back from the back-forward cache with an older mark counts as new.
    """
    from selenium.common.exceptions import WebDriverException

    def loaded(driver) -> bool:
        try:
            return bool(
                driver.execute_script(
                    "return window.__testMark !== arguments[0] && document.readyState === 'complete'", token
                )
            )
        except WebDriverException:
            return False

    return loaded


def click_and_wait(driver, element, wanted_id: str):
    """Click (a link or a submit button) and wait for the next page's element ``wanted_id``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    token = mark_document(driver)
    element.click()
    WebDriverWait(driver, 120).until(new_document_loaded(token))
    return WebDriverWait(driver, 120).until(expected_conditions.presence_of_element_located((By.ID, wanted_id)))


def screenshot(driver, path: Path) -> Path:
    """Save a screenshot and check it is not blank: its pixels vary (a blank page is one colour)."""
    from PIL import Image, ImageStat

    driver.save_screenshot(str(path))
    with Image.open(path) as image:
        grey = image.convert("L")
        stddev = ImageStat.Stat(grey).stddev[0]
        colours = len(grey.getcolors(maxcolors=256) or [])
    assert stddev > 10 and colours > 8, f"{path.name} looks blank (pixel stddev {stddev:.1f}, {colours} grey levels)"
    return path


def test_browser__runs_filter_blocked_run_why_document_diff(server, browser, web_store, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server)
    ids = {link.text for link in browser.find_elements(By.CSS_SELECTOR, "a.run-link")}
    assert ids == {web_store["passed"], web_store["blocked"], web_store["waived"]}
    screenshot(browser, tmp_path / "runs.png")
    assert_nothing_from_outside(browser, server)

    # the monitoring result of the passing run, with its verdict
    (monitoring,) = browser.find_elements(By.CSS_SELECTOR, "#monitoring-results tr.monitoring-row")
    assert monitoring.find_element(By.CSS_SELECTOR, "a.monitoring-run-link").text == web_store["passed"]
    assert monitoring.find_element(By.CSS_SELECTOR, ".verdict").text == web_store["monitored"]
    assert "batch.csv" in monitoring.text and "1000" in monitoring.text

    # the plan's name holds a <script>: shown as text, never run
    plans = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#runs tbody td:nth-child(3)")]
    assert plans == [f"adult-web {SCRIPT}"] * 3
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text

    # filter by decision: the blocked run alone (the waived one passes now)
    Select(browser.find_element(By.ID, "decision")).select_by_value("blocked")
    click_and_wait(browser, browser.find_element(By.ID, "apply"), "count")
    shown = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "a.run-link")]
    assert shown == [web_store["blocked"]]
    assert "decision=blocked" in browser.current_url
    screenshot(browser, tmp_path / "runs-blocked.png")

    # the blocked run and its "why"
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, web_store["blocked"]), "verdict")
    assert browser.find_element(By.CSS_SELECTOR, "#verdict .big").text == "BLOCKED"
    why = browser.find_element(By.ID, "why").text
    assert "The release is blocked because 1 blocking rule(s) of the policy web-gate failed" in why
    assert "near-perfect" in why and f"Accuracy must be near perfect (deliberately out of reach) {SCRIPT}" in why
    assert "the limit is at least 0.99" in why
    charts = browser.find_elements(By.CSS_SELECTOR, "img.chart")
    assert {c.get_attribute("id") for c in charts} == {"chart-fairness", "chart-robustness", "chart-privacy"}
    for chart in charts:  # each SVG chart loaded and drawn
        browser.execute_script("arguments[0].scrollIntoView()", chart)
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", chart) > 100
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, tmp_path / "run-blocked.png")
    browser.execute_script("document.getElementById('charts').scrollIntoView()")
    screenshot(browser, tmp_path / "run-blocked-charts.png")
    assert_nothing_from_outside(browser, server)
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text

    # follow a document link: the model card, served because its sha256 matches the store
    card = next(a for a in browser.find_elements(By.CSS_SELECTOR, "a.doc-link") if a.text == "model_card.html")
    click_and_wait(browser, card, "model-details")
    assert web_store["blocked"] in browser.page_source and "Model card" in browser.title + browser.page_source
    screenshot(browser, tmp_path / "model-card.png")
    assert_nothing_from_outside(browser, server)
    token = mark_document(browser)
    browser.back()
    WebDriverWait(browser, 120).until(new_document_loaded(token))
    WebDriverWait(browser, 120).until(expected_conditions.presence_of_element_located((By.ID, "diff-with")))

    # the diff against the passing run
    Select(browser.find_element(By.ID, "diff-with")).select_by_value(web_store["passed"])
    click_and_wait(browser, browser.find_element(By.ID, "diff-go"), "diff-head")
    head = browser.find_element(By.ID, "diff-head").text
    assert web_store["blocked"] in head and web_store["passed"] in head and "Policy changed" in head
    changed = browser.find_element(By.ID, "rules_changed").text
    assert "near-perfect" in changed and "(absent)" in changed
    screenshot(browser, tmp_path / "diff.png")
    assert_nothing_from_outside(browser, server)


def test_browser__waived_run_shows_approver_and_expiry(server, browser, web_store, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}runs/{web_store['waived']}")
    assert browser.find_element(By.CSS_SELECTOR, "#verdict .big").text == "PASS"
    waivers = browser.find_element(By.ID, "waivers").text
    assert "Dana <Risk> Officer" in waivers and "2099-12-31" in waivers and "pilot with human review" in waivers
    why = browser.find_element(By.ID, "why").text
    assert "Rule near-perfect · waived" in why and "approver: Dana <Risk> Officer" in why
    screenshot(browser, tmp_path / "run-waived.png")


def test_browser__a_tampered_store_shows_the_integrity_failure(web_store, browser, tmp_path):
    from selenium.webdriver.common.by import By

    copy = tmp_path / "tampered.db"
    source = sqlite3.connect(web_store["path"])
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    proc, url = start_server(f"sqlite:///{copy}")
    try:
        browser.get(f"{url}integrity")
        assert "Verified" in browser.find_element(By.ID, "integrity-status").text
        with sqlite3.connect(copy) as conn:  # a reviewer's wish: the blocked run's accuracy raised
            conn.execute("UPDATE measurements SET value_json = '0.999' WHERE run_id = ? AND metric = 'accuracy'",
                         (web_store["blocked"],))
        conn.close()
        browser.get(f"{url}runs/{web_store['blocked']}")
        banner = browser.find_element(By.ID, "integrity-banner").text
        assert banner.startswith("Integrity failure") and "changed" in banner
        assert "near-perfect" not in browser.find_element(By.TAG_NAME, "main").text
        browser.get(f"{url}integrity")
        status = browser.find_element(By.ID, "integrity-status").text
        assert status.startswith("Integrity failure") and "ledger entry" in status
        screenshot(browser, tmp_path / "integrity-failure.png")
    finally:
        stop(proc)
    result = subprocess.run([sys.executable, "-m", "govssl.cli", "verify", "--db", f"sqlite:///{copy}"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 3


def test_serve__non_loopback_bind_without_token_refuses_to_start(web_store):
    env = {k: v for k, v in os.environ.items() if k != "GOVSSL_SERVE_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "govssl.cli", "serve", "--db", web_store["db"], "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 2
    assert "--host 0.0.0.0: not a loopback address" in result.stderr and "--token" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve__with_a_token_says_so_and_refuses_requests_without_it(web_store):
    import httpx

    token = "a-long-enough-token-0123"
    proc, url = start_server(web_store["db"], "--token", token)
    try:
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        stop(proc)
