"""The page's words in every language it speaks: English and 简体中文.

The catalogues live in ``assets/strings/<lang>.json``, one flat ``key -> text`` map per language,
the same keys in each. Texts are ``str.format`` templates: ``"{n:,} tokens"``.

Two kinds of text use them:

- labels the browser translates (``gr.I18n`` is built from the same catalogues), and
- words the library or a handler makes at run time (warnings, notes, plot titles): those are
  ``Message(key, params)`` values, rendered in the reader's language by ``render``. Their ``str``
  is English, so a library caller who never asks for a language reads English.

The library below the UI never reads these files: it writes English itself (``errors.MESSAGES``,
``plots.WORDS``, each zoo entry's ``about``) and raises ``errors.InputError(code, **params)``. Those
English texts *are* the English catalogue's entries for their keys (merged in by ``catalogues``;
``en.json`` holds only what the UI itself says), and ``zh-CN.json`` translates every key.
``MessageError`` is the UI's own ``InputError``: its English comes from the catalogue.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

from playground import plots, zoo
from playground import errors
from playground.errors import InputError
from playground.paths import ASSETS_DIR

STRINGS_DIR = ASSETS_DIR / "strings"
LANGUAGES = ("en", "zh-CN")
DEFAULT = "en"
NAMES = {"en": "English", "zh-CN": "简体中文"}


def library_english() -> dict[str, str]:
    """The English the library writes itself: error messages, figure words, the zoo's descriptions."""
    return {**errors.MESSAGES, **plots.WORDS, **{f"zoo.about.{name}": zoo.about(name) for name in zoo.ZOO},
            "zoo.about.user": zoo.USER_ABOUT}


def read_catalogue(lang: str) -> dict[str, str]:
    """One language's file, as written: ``assets/strings/<lang>.json``."""
    return json.loads((STRINGS_DIR / f"{lang}.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def catalogues() -> dict[str, dict[str, str]]:
    """{language: {key: template}} for every language in LANGUAGES; English adds the library's own words."""
    books = {lang: read_catalogue(lang) for lang in LANGUAGES}
    books[DEFAULT] = {**library_english(), **books[DEFAULT]}
    return books


@dataclass(frozen=True)
class Message:
    """A sentence to be written in the reader's language: a catalogue key and its parameters.

    Parameters may themselves be Messages (rendered in the same language first).
    """

    key: str
    params: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return render(self, DEFAULT)

    def __hash__(self) -> int:
        return hash((self.key, tuple(sorted((k, str(v)) for k, v in self.params.items()))))


def msg(key: str, **params) -> Message:
    return Message(key, params)


class MessageError(InputError):
    """Bad input the UI itself finds, with a message the page can show in the reader's language."""

    def english(self) -> str:
        return str(Message(self.code, self.params))


def normalise(lang: str | None) -> str:
    """'zh-CN' (any case, '_' or '-') -> 'zh-CN'; anything else -> 'en'.

    The same rule as the browser side, which shows a catalogue only for an exact locale match and
    English otherwise: labels and server-written text then always agree."""
    return "zh-CN" if (lang or "").strip().lower().replace("_", "-") == "zh-cn" else DEFAULT


def text(lang: str, key: str, **params) -> str:
    """The template for ``key`` in ``lang`` (English where a language lacks it), filled in."""
    books = catalogues()
    template = books.get(normalise(lang) if lang not in books else lang, {}).get(key)
    if template is None:
        template = books[DEFAULT][key]  # KeyError: a key used in code but missing from the catalogue
    values = {k: render(v, lang) for k, v in params.items()}
    return template.format(**values) if values else template


# An absolute path in a message: '/' then path characters, or a Windows drive. A visitor reads the file's name only.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/|[A-Za-z]:\\)(?:[^\s'\"`,;:()<>]+[/\\])+([^\s'\"`,;:()<>/\\]*)")


def redact_paths(message: str) -> str:
    """``message`` with each absolute path replaced by its last part (``/root/.cache/hf/x/config.json`` ->
    ``config.json``): what the server's disk looks like is not a visitor's business. The library keeps the whole
    path for a notebook; the page shows every error through this."""
    return ABSOLUTE_PATH.sub(lambda m: m.group(1) or "…", message)


def render(value, lang: str):
    """A Message in ``lang``; an InputError's message; another exception's message with server paths left out;
    anything else unchanged."""
    if isinstance(value, InputError):
        value = Message(value.code, value.params)
    if isinstance(value, Message):
        return text(lang, value.key, **value.params)
    if isinstance(value, BaseException):
        return redact_paths(str(value))
    return value


ACCEPT = re.compile(r"\s*([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*")


def from_accept_language(header: str | None) -> str:
    """The best language we speak for an HTTP Accept-Language header ('zh-CN,zh;q=0.9,en;q=0.8')."""
    ranked = []
    for i, part in enumerate((header or "").split(",")):
        m = ACCEPT.fullmatch(part)
        if not m or m.group(1) == "*":
            continue
        try:
            q = float(m.group(2)) if m.group(2) else 1.0
        except ValueError:
            continue
        ranked.append((-q, i, m.group(1)))
    for _, _, tag in sorted(ranked):
        lang = normalise(tag)
        if lang != DEFAULT or tag.lower().startswith("en"):
            return lang
    return DEFAULT
