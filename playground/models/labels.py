"""How a token is shown as a heatmap label: the conventions every tokenizer here shares.

Spaces, newlines and tabs get markers (␣ ⏎ ⇥); other invisible characters are escaped; a label is
never empty. The shipped sentencepiece tokenizer (``playground.train.tokenizer``) and the Hub
tokenizers (``playground.models.pretrained.tokenizer``) both label with ``display_text``.
"""
from __future__ import annotations

import unicodedata
from types import MappingProxyType

# How characters that would be invisible or harmful in an axis label are shown.
VISIBLE = MappingProxyType({" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "\\r"})
EMPTY_LABEL = "∅"
HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")


def display_text(text: str) -> str:
    """``text`` made safe and visible as a plain-text label (never empty, no control chars).

    Spaces, newlines and tabs get markers (␣ ⏎ ⇥); other control, format, separator and
    unassigned characters are escaped (``\\x00``, ``\\u200b``); a leading combining mark is
    put on a dotted circle (◌) so it has something to combine with.
    """
    out = []
    for ch in text:
        if ch in VISIBLE:
            out.append(VISIBLE[ch])
        elif unicodedata.category(ch) in HIDDEN_CATEGORIES:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    label = "".join(out)
    if label and unicodedata.category(label[0]).startswith("M"):
        label = "◌" + label
    return label or EMPTY_LABEL


def utf8_length(lead: int) -> int:
    """Bytes in the UTF-8 sequence a lead byte starts; 0 for a byte that cannot lead."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0
