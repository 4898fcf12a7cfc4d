"""Fixtures of the browser tests: a headless chromium, closed whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from browser.cdp import Browser, find_chromium


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("chromium is not installed (tests/browser/setup.sh installs it)")
    return found


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    started = Browser(chromium, profile, tmp_path / "chromium.log")
    try:
        yield started
    finally:
        started.close()
