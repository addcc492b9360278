"""Bad input, said once: a ``ValueError`` that carries a code and its parameters.

The library raises ``InputError(code, **params)``; its ``str`` is the English sentence from
``MESSAGES``, so a notebook or a traceback reads English. The page renders the same code in the
reader's language from its catalogue (``ui.i18n``), whose English entries are these.
"""
from __future__ import annotations

MESSAGES: dict[str, str] = {
    "error.positive_int": "{name} must be a positive integer, got {value!r}",
    "error.heads_divisible": "n_heads={n_heads} must be divisible by n_kv_heads={n_kv_heads}",
}


class InputError(ValueError):
    """A ValueError with a message code (a key of ``MESSAGES`` or of the page's catalogue) and parameters."""

    def __init__(self, code: str, **params):
        self.code, self.params = code, params
        super().__init__(self.english())

    def english(self) -> str:
        template = MESSAGES.get(self.code)
        return template.format(**self.params) if template else self.code
