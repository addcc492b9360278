"""The page's JavaScript lives in assets/js; Python hands each script its constants, written once in Python."""
import json
import re

from playground.ui.attention import CLICK_HEAD, PICK_ID
from playground.ui.lang import COOKIE, HEAD, RELOCALIZE_ID, TRANSLATED_ON_LOAD
from playground.ui.scripts import SCRIPTS_DIR, page_script


def constants_of(head: str) -> dict:
    found = re.search(r"Object\.assign\(window\.PLAYGROUND \|\| \{\}, (.*)\);</script>", head)
    return json.loads(found.group(1))


def test_each_script_gets_the_names_python_owns():
    assert constants_of(HEAD) == {"langCookie": COOKIE, "relocalizeId": RELOCALIZE_ID, "builtLang": "en",
                                  "pending": list(TRANSLATED_ON_LOAD), "revealAfterMs": 20_000}
    assert constants_of(CLICK_HEAD) == {"headPickId": PICK_ID}
    assert (SCRIPTS_DIR / "language.js").read_text() in HEAD
    assert (SCRIPTS_DIR / "click_head.js").read_text() in CLICK_HEAD


def test_no_script_writes_a_constant_itself():
    for name, value in (("language", COOKIE), ("language", RELOCALIZE_ID), ("click_head", PICK_ID)):
        source = (SCRIPTS_DIR / f"{name}.js").read_text()
        for written in (f'"{value}', f"'{value}", f"`{value}", f"#{value}"):  # a string literal or a selector
            assert written not in source, (name, written)


def test_a_constant_cannot_close_the_script_tag():
    head = page_script("click_head", headPickId="</script><script>alert(1)</script>")
    assert head.count("</script>") == 2  # the constants' tag and the file's tag, nothing injected


def test_figure_downloads_get_the_size_row_ids_and_both_languages_titles():
    from playground.ui import launch_options
    from playground.ui.figure_export import HEIGHT_ID, MAX_PX, SCRIPT, WIDTH_ID
    from playground.ui.i18n import LANGUAGES, text

    constants = constants_of(SCRIPT)
    assert constants["exportWidthId"] == WIDTH_ID and constants["exportHeightId"] == HEIGHT_ID
    assert constants["exportMax"] == MAX_PX
    assert constants["exportTitles"]["en"] == {"png": "Download as PNG", "svg": "Download as SVG"}
    assert set(constants["exportTitles"]) == set(LANGUAGES)
    assert constants["exportTitles"]["zh-CN"]["svg"] == text("zh-CN", "export.svg") != "Download as SVG"
    assert (SCRIPTS_DIR / "figure_export.js").read_text() in SCRIPT
    assert SCRIPT in launch_options()["head"]  # loaded with the page like the other scripts


def test_the_export_script_writes_no_size_row_id_itself():
    from playground.ui.figure_export import HEIGHT_ID, WIDTH_ID

    source = (SCRIPTS_DIR / "figure_export.js").read_text()
    for value in (WIDTH_ID, HEIGHT_ID):
        for written in (f'"{value}', f"'{value}", f"`{value}", f"#{value}"):
            assert written not in source, written
