"""The page's language: labels translated in the browser, run-time words on the server.

The browser picks the language (its own setting, or Gradio's footer Settings -> Language) and
translates every label made with ``t(key)``. Words a handler makes (warnings, notes, titles, table
headers) are rendered on the server in the language the page shows: a small script
(``assets/js/language.js``) copies ``<html lang>`` into a cookie (again whenever this tab is focused
or clicked, so two tabs in two languages each send their own) and, on a switch, presses a hidden
button that re-renders the parts the server wrote (``Localized``: table headers, the lab figures,
the zoo table, the model note, and the analysis and generation on screen, drawn again from their
state). Without the cookie (API callers, a first request, a browser that refuses it) the Accept-Language header
decides; without either, English.
"""
from __future__ import annotations

import json
from http.cookies import SimpleCookie

import gradio as gr

from playground.ui.i18n import catalogues, from_accept_language, normalise, render, text
from playground.ui.initial import set_initial
from playground.ui.scripts import page_script

I18N = gr.I18n(**catalogues())
COOKIE = "playground_lang"
RELOCALIZE_ID = "relocalize"
# the parts of the page a reader in another language than the page's own waits for, hidden until then
TRANSLATED_ON_LOAD = ("landing", "localized")
HEAD = page_script("language", langCookie=COOKIE, relocalizeId=RELOCALIZE_ID, builtLang="en",
                   pending=list(TRANSLATED_ON_LOAD), revealAfterMs=20_000)  # assets/js/language.js


def translated_js(part: str) -> str:
    """The client-side step that says ``part`` (of ``TRANSLATED_ON_LOAD``) is now in the reader's language."""
    if part not in TRANSLATED_ON_LOAD:
        raise ValueError(f"unknown part {part!r}; valid: {', '.join(TRANSLATED_ON_LOAD)}")
    return f"() => window.PLAYGROUND.translated({json.dumps(part)})"


def t(key: str):
    """A label the browser shows in its language."""
    return I18N(key)


def english(keys: list[str]) -> list[str]:
    """Column names before the page has told the server its language (Localized replaces them on load)."""
    return [text("en", k) for k in keys]


def language(request: gr.Request | None) -> str:
    """The language of the page that sent this request ('en' or 'zh-CN')."""
    if request is None:  # the page's own language, the one it is built in (``builtLang`` above)
        return "en"
    headers = request.headers
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header: fall back to Accept-Language
        cookie = {}
    if COOKIE in cookie:
        return normalise(cookie[COOKIE].value)
    return from_accept_language(headers.get("accept-language"))


def visitor_error(message: str) -> gr.Error:
    """A ``gr.Error`` for the visitor: shown to them, and no traceback in the server's log (their input, not a
    fault of the server's; ``api.run`` logs one line per request, and a real fault's traceback once)."""
    return gr.Error(message, print_exception=False)


class Words:
    """``w("key", n=3)`` -> the text in one request's language; ``w.error`` / ``w.warn`` / ``w.info`` show it."""

    def __init__(self, request: gr.Request | None = None, lang: str | None = None):
        self.lang = normalise(lang) if lang else language(request)

    def __call__(self, key: str, **params) -> str:
        return text(self.lang, key, **params)

    def render(self, value) -> str:
        return render(value, self.lang)

    def error(self, key_or_exc, **params) -> gr.Error:
        """A gr.Error to raise: from a catalogue key, or from a library ValueError (MessageError or plain)."""
        if isinstance(key_or_exc, Exception):  # an InputError, a MessageError or a plain ValueError
            return visitor_error(self.render(key_or_exc))
        return visitor_error(self(key_or_exc, **params))

    def warn(self, message) -> None:
        gr.Warning(self.render(message))

    def info(self, key: str, **params) -> None:
        gr.Info(self(key, **params))


class Localized:
    """What the server writes once per page (table headers, static figures, the zoo table).

    Each part is a component and ``render(w, value) -> new value`` (value: the component's current
    value, so a table keeps its rows while its headers change language). ``wire`` runs every part
    when the page loads and when the reader switches language.
    """

    def __init__(self):
        self.parts: list[tuple[gr.components.Component, object]] = []
        self.redraws: list[tuple[object, list, list]] = []

    def on_switch(self, fn, inputs: list, outputs: list) -> None:
        """Also run ``fn(*inputs, request)`` on a language switch: results on screen drawn again."""
        self.redraws.append((fn, inputs, outputs))

    def add(self, component, render) -> None:
        self.parts.append((component, render))

    def table(self, component, header_keys: list[str]) -> None:
        """A Dataframe whose column names come from the catalogue; its rows are kept."""
        def render(w: Words, value):
            # a DataFrame from the page, or the table as the page's config holds it ({"headers", "data"})
            rows = (value or {}).get("data", []) if value is None or isinstance(value, dict) else value.values.tolist()
            return {"headers": [w(k) for k in header_keys], "data": rows}
        self.add(component, render)

    def wire(self, demo: gr.Blocks, switch: gr.Button) -> None:
        """The parts written now in the page's own language (``Words(None)``); a page that opens in another
        language gets them from the server on load, and every part is written again on a switch."""
        components = [c for c, _ in self.parts]
        page = Words(None)
        set_initial(components, [draw(page, c.value) for c, draw in self.parts])

        def fill(request: gr.Request, *values):  # Gradio passes the request first, then the values
            w = Words(request)
            return [render(w, value) for (_, render), value in zip(self.parts, values)]

        def fill_on_open(request: gr.Request):
            """On load the values are still the page's own: nothing to send unless the language differs."""
            w = Words(request)
            if w.lang == page.lang:
                return [gr.skip()] * len(self.parts)
            return [draw(w, c.value) for c, draw in self.parts]

        demo.load(fill_on_open, None, components, api_visibility="private").then(
            None, js=translated_js("localized"))
        switch.click(fill, components, components, api_visibility="private")
        for fn, inputs, outputs in self.redraws:
            switch.click(fn, inputs, outputs, api_visibility="private")
