"""``/docs`` in a real headless Chromium: Swagger UI renders every operation of
the replica's OpenAPI document, from files the replica serves, with nothing
fetched from anywhere else (this machine has no route out, and the page's
Content-Security-Policy would refuse it: either shows in the log)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import script_errors
from tests.support.paths import ARTIFACTS
from tests.support.processes import start_hub


def test_the_api_reference_renders_every_operation_from_the_replica_alone(
    redis_url: str, browser: WebDriver
) -> None:
    hub = start_hub(redis_url)
    try:
        document = httpx.get(f"{hub.url}/openapi.json", timeout=5).json()
        operations = sorted((method.upper(), path) for path, item in document["paths"].items()
                            for method in item)
        browser.get(f"{hub.url}/docs")
        blocks = '#swagger-ui .opblock'
        WebDriverWait(browser, 20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, blocks)) >= len(operations))
        shown = sorted(
            (block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
             block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
                 "data-path"))
            for block in browser.find_elements(By.CSS_SELECTOR, blocks))
        assert shown == operations
        assert document["info"]["title"] in browser.find_element(By.CSS_SELECTOR, ".title").text
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "api-docs.png"))

        loaded = browser.execute_script(
            "return [location.href, ...performance.getEntriesByType('resource')"
            ".map(e => e.name)]")
        origins = {urlsplit(url)[:2] for url in loaded}
        assert origins == {urlsplit(hub.url)[:2]}, loaded
        assert {urlsplit(url).path.rsplit("/", 1)[-1] for url in loaded} >= {
            "swagger-ui-bundle.js", "swagger-ui.css", "start.js", "openapi.json"}
        problems = [entry["message"] for entry in browser.get_log("browser")  # type: ignore[no-untyped-call]
                    if entry.get("level") == "SEVERE"]
        assert problems == [] and script_errors(browser) == []
    finally:
        hub.stop()
