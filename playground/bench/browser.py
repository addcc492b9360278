"""The page in Debian chromium, driven by playwright: one launch recipe for the app benchmark and the tests.

Chromium runs headless with no sandbox, GPU, sync, updates or background traffic, so a measured
render is the page's own work. Playwright is imported only when a browser is launched.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from contextlib import contextmanager

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
INSTALL = "apt-get install chromium fonts-wqy-microhei"


def has_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def launch(playwright):
    """A headless chromium from a started ``sync_playwright()`` (close it, or leave the ``with`` block)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def available() -> bool:
    """Whether a page can be driven here: playwright installed and chromium at ``CHROMIUM``."""
    return importlib.util.find_spec("playwright") is not None and has_chromium()


@contextmanager
def using(browser=None):
    """``browser`` (a launched playwright browser) as it is, or a chromium launched for the ``with`` block."""
    if browser is not None:
        yield browser
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = launch(p)
        try:
            yield launched
        finally:
            launched.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
