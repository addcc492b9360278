"""The page's JavaScript: files under ``assets/js/``, each given the constants it reads.

A script reads its constants (a cookie name, element ids) from ``window.PLAYGROUND``; the Python
module that owns those names passes them here, so each is written once, in Python.
"""
from __future__ import annotations

import json

from playground.paths import ASSETS_DIR

SCRIPTS_DIR = ASSETS_DIR / "js"


def page_script(name: str, **constants: object) -> str:
    """``assets/js/<name>.js`` as ``<script>`` tags for the page's ``<head>``, its constants (JSON values) set first."""
    source = (SCRIPTS_DIR / f"{name}.js").read_text(encoding="utf-8")
    values = json.dumps(constants).replace("</", "<\\/")  # a value cannot close the <script> tag
    return (f"<script>window.PLAYGROUND = Object.assign(window.PLAYGROUND || {{}}, {values});</script>\n"
            f"<script>\n{source}</script>\n")
