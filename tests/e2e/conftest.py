"""A real headless Chromium, driven by selenium through Debian's chromium-driver; a Docker
engine of the tests' own for the compose tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.support.docker_engine import (
    DockerEngine,
    EngineUnavailable,
    ensure_base_images,
    start_engine,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile, so its own sessionStorage)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: `make setup` installs chromium and "
                    "chromium-driver (Debian packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1100", "--no-first-run", "--disable-quic",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--force-color-profile=srgb"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromium and the chromedriver process this fixture started



@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """The compose tests' own dockerd (stopped, network put back, on every exit path),
    with the base images the compose files name present."""
    try:
        engine = start_engine()
    except EngineUnavailable as missing:
        pytest.fail(str(missing))
    try:
        ensure_base_images(engine)
        yield engine
    finally:
        engine.stop()
