"""Playwright's ``expect`` for the browser tests, with the time a click's result may take to show.

Imported lazily at the first call: the ``browser`` fixture (conftest.py) pip-installs Playwright
when it is missing, so it may not be importable when the test modules are collected."""
from __future__ import annotations

LIVE_TIMEOUT = 20_000  # ms for a click's (or key press's) result to show up in the page
_expect = None


def expect(*args, **kwargs):
    global _expect
    if _expect is None:
        from playwright.sync_api import expect as playwright_expect
        playwright_expect.set_options(timeout=LIVE_TIMEOUT)
        _expect = playwright_expect
    return _expect(*args, **kwargs)
