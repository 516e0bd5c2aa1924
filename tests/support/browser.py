"""What the browser tests read from a page beyond the DOM: its script errors.

The ``browser`` fixture (a headless Chromium) is among the e2e fixtures.
"""

from __future__ import annotations

from selenium.webdriver.chrome.webdriver import WebDriver


def script_errors(driver: WebDriver) -> list[str]:
    """Uncaught JavaScript errors the page logged (network errors are not script errors)."""
    return [
        entry["message"] for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
        if entry.get("level") == "SEVERE" and "Uncaught" in entry.get("message", "")
    ]
