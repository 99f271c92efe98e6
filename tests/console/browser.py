"""Headless Chromium for the console tests: Debian's chromium and chromedriver through Selenium,
an axe-core accessibility check, and screenshots for docs/console.md.

Selenium's calls block, and the bridge under test runs on the test's own event loop, so the
tests run every browser step in a worker thread (`asyncio.to_thread`).

axe-core 4.14.1 (MPL-2.0, tests/fixtures/axe/LICENSE) is vendored as the single file
tests/fixtures/axe/axe.min.js, from `npm pack axe-core@4.14.1`.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES

AXE_SCRIPT = FIXTURES / "axe" / "axe.min.js"
# Findings that fail a page. Moderate and minor ones are reported, not failed on.
BLOCKING_IMPACTS = ("serious", "critical")
# Set to a directory (e.g. docs/console) to save a PNG of each page the tests visit.
SCREENSHOTS_ENV = "BRIDGE_CONSOLE_SCREENSHOTS"
WAIT_S = 20
# CI sets this (.ci/run): there a missing browser is a failure, not a skip.
REQUIRE_ENV = "BRIDGE_REQUIRE_BROWSER"


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_paths() -> tuple[str, str] | None:
    browser = _find("chromium", "chromium-browser")
    driver = _find("chromedriver") or (
        "/usr/lib/chromium/chromedriver"
        if Path("/usr/lib/chromium/chromedriver").exists()
        else None
    )
    return (browser, driver) if browser and driver else None


@dataclass
class Browser:
    driver: Any
    base_url: str = ""
    findings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def wait_for(self, css: str) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, WAIT_S).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def click_button(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']").click()

    def text(self) -> str:
        return str(self.find("body").text)

    def path(self) -> str:
        url = str(self.driver.current_url)
        return url.removeprefix(self.base_url)

    def check_accessibility(self, name: str) -> list[dict[str, Any]]:
        """Run axe-core on the current page; its serious and critical violations."""
        self.driver.execute_script(AXE_SCRIPT.read_text())
        violations: list[dict[str, Any]] = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            "  .then(r => done(r.violations), e => done([{id: 'axe-error', impact: 'critical',"
            "    help: String(e), nodes: []}]));"
        )
        self.findings[name] = violations
        return [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]

    def screenshot(self, name: str) -> None:
        directory = os.environ.get(SCREENSHOTS_ENV)
        if not directory:
            return
        Path(directory).mkdir(parents=True, exist_ok=True)
        # The whole page, not only the window (Chrome DevTools: capture beyond the viewport).
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000)}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        )
        (Path(directory) / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def describe(violations: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{v['id']} ({v.get('impact')}): {v.get('help')} at "
        + ", ".join(str(node.get("target")) for node in v.get("nodes", [])[:3])
        for v in violations
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    paths = chromium_paths()
    if paths is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but chromium or chromedriver is not installed")
        pytest.skip(
            "chromium and chromedriver are not installed (apt-get install chromium "
            "chromium-driver; .ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser_path, driver_path = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    # CI runs as root, where Chromium's sandbox cannot start.
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(60)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
