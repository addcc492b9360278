"""What a session keeps of an analysis, and how a view gets the analysis back from it.

``analysis_state`` runs (or finds) an analysis in the server's store and hands the session an
``AnalysisRef``: the request that made it, a few hundred bytes. Every view calls ``ref.result(w)``,
which the store answers, computing it again when it had let it go.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from playground.inspect.analysis import Analysis, Cancelled
from playground.ui import service
from playground.ui.i18n import Message, msg
from playground.zoo import ModelSpec
from . import api
from .lang import Words, visitor_error


def kind_title(kind: str, result: Analysis) -> Message:
    if kind == "self":
        if result.config["family"] == "prefix":
            return msg("kind.self_prefix", n=result.prefix_len)
        if result.config["family"] == "encoder":
            return msg("kind.self_encoder")
        return msg("kind.self")
    if kind == "implicit":
        if result.config["family"] == "mamba":
            cfg = result.config
            return msg("kind.implicit_mamba", channels=cfg["expand"] * cfg["d_model"] // cfg["n_heads"])
        return msg("kind.implicit_rwkv")
    return msg(f"kind.{kind}")  # encoder_self, decoder_self, cross


def layer_type(code: str | None) -> Message | None:
    """A layer's type (``AttentionRecord.layer_type``: ``sliding:512``, ``full``, ``nope``, ``hybrid:3:8``, joined by
    ",") in the reader's words, or None for a layer like every other."""
    if not code:
        return None
    words = []
    for part in code.split(","):
        name, *args = part.split(":")
        if name == "sliding":
            words.append(msg("layer_type.sliding", n=args[0]))
        elif name == "hybrid":
            words.append(msg("layer_type.hybrid", i=args[0], n=args[1]))
        else:
            words.append(msg({"full": "layer_type.full", "nope": "layer_type.nope"}[name]))
    return words[0] if len(words) == 1 else msg("layer_type.both", first=words[0], second=words[1])


def layer_name(layer: int, code: str | None) -> Message:
    """How a plot names a layer: "layer 3", or "layer 3 · sliding window 512" in a model whose layers differ."""
    kind = layer_type(code)
    return msg("plot.layer", i=layer) if kind is None else msg("plot.layer_typed", i=layer, type=kind)


def kind_labels(kind: str, result: Analysis) -> tuple[list[str], list[str]]:
    """(query labels, key labels) of an attention kind."""
    if kind == "encoder_self":
        return result.source_labels, result.source_labels
    if kind == "cross":
        return result.labels, result.source_labels
    return result.labels, result.labels


@dataclass(frozen=True)
class AnalysisRef:
    """What a session keeps of an analysis: the request that made it (spec, prompt, options), a few hundred
    bytes. The analysis itself lives in ``service.ANALYSES``, shared by every session that asks the same, and
    ``ref.result(w)`` reads it from there. When the store has let it go, that call computes it again (it is
    deterministic) the way Analyze does: in the reader's language, saying so, with a progress bar and Cancel
    where the caller passes them."""

    spec: ModelSpec
    prompt: str
    options: dict     # prefix_len, window, backend, device, dtype: ``service.analyze_text``'s
    key: str          # the store's key of this request (``service.request_key``)
    kind: str = ""    # the attention kind a tab reads (Head insights), where one does

    @property
    def untrained(self) -> bool:
        return not self.spec.trained

    @property
    def backend(self) -> str:
        return self.options["backend"]

    @property
    def device(self) -> str:
        return self.options["device"]

    def result(self, w: Words | None = None, progress=None, cancelled=None) -> Analysis:
        stored = service.stored_analysis(self.key)  # every view reads it: no config read or hash per read
        if stored is not None:
            return stored
        return run_analysis(w or Words(), self.spec, self.prompt, self.options, progress=progress,
                            cancelled=cancelled)

    def extended(self, **changes) -> "AnalysisRef":
        """The same reference with some fields changed (the kind a tab reads)."""
        return replace(self, **changes)


def run_analysis(w: Words, model, prompt: str, options: dict, where: str = "", progress=None,
                 cancelled=None) -> Analysis:
    """The analysis of a request through the store (computed on a miss), its notes shown in ``w``'s language (a
    recompute after eviction among them); bad input or Cancel: a gr.Error saying so."""
    try:
        return api.run(w, service.analyze_text, model, prompt, progress=progress, cancelled=cancelled, where=where,
                       lang=w.lang, **options)
    except Cancelled as e:
        raise visitor_error(w("error.cancelled", detail=str(e))) from None


def analysis_state(w: Words, spec: str, prompt: str, prefix_len: int = 0, window: int = 0, backend: str = "auto",
                   device: str = "cpu", dtype: str = "auto", where: str = "", progress=None,
                   cancelled=None) -> AnalysisRef:
    """A spec, a prompt and the options -> what every view of one analysis draws from (bad input: gr.Error,
    its message prefixed with ``where`` when given). The analysis goes into the server's store; the session
    keeps only the request (``AnalysisRef``)."""
    model = api.spec(w, spec)
    options = dict(prefix_len=prefix_len, window=window, backend=backend, device=device, dtype=dtype)
    run_analysis(w, model, prompt, options, where, progress, cancelled)
    key, _ = service.request_key(model, prompt, **options)
    return AnalysisRef(spec=model, prompt=prompt, options=options, key=key)
