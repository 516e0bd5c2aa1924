"""What the browser tests read from a page beyond the DOM (its script errors), how
they wait on it, size it and take its picture.

The ``browser`` fixture (a headless Chromium) is among the e2e fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium.webdriver.chrome.webdriver import WebDriver

from tests.support.polling import wait_until

T = TypeVar("T")


def script_errors(driver: WebDriver) -> list[str]:
    """Uncaught JavaScript errors the page logged, and what its Content-Security-Policy
    refused (network errors are not script errors)."""
    return [
        entry["message"] for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
        if entry.get("level") == "SEVERE" and any(
            sign in entry.get("message", "") for sign in ("Uncaught", "Content Security Policy"))
    ]


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], what: str,
             timeout: float = 30) -> T:
    """``polling.wait_until`` on a page: ``condition(driver)`` until truthy, by a deadline.

    A script error while the page is still building (an element not there yet)
    counts as "not yet"; generous by default, as the machine may be loaded.
    """
    return wait_until(lambda: condition(driver), timeout=timeout, what=what, interval=0.1)


def set_viewport(driver: WebDriver, width: int, height: int) -> None:
    """The page's viewport at exactly ``width`` × ``height`` CSS pixels (a laptop, a phone)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # type: ignore[no-untyped-call]
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def screenshot(driver: WebDriver, directory: Path, name: str) -> Path:
    """A PNG of the viewport in ``directory`` (the test's tmp dir); its path is printed."""
    path = directory / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path
