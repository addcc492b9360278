"""What a session keeps of an analysis, and how a view gets the analysis back from it.

``analysis_state`` runs (or finds) an analysis in the server's store and hands the session an
``AnalysisRef``: the request that made it, a few hundred bytes. Every view reads ``ref["result"]``,
which the store answers, computing it again when it had let it go.
"""
from __future__ import annotations

import gradio as gr

from playground.inspect.analysis import Analysis, Cancelled
from playground.ui import service
from playground.ui.i18n import Message, msg
from . import api
from .lang import Words


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


class AnalysisRef(dict):
    """What a session keeps of an analysis: the request that made it (spec, prompt, options), a few hundred
    bytes. The analysis itself lives in ``service.ANALYSES``, shared by every session that asks the same;
    ``ref["result"]`` reads it from there, computing it again (it is deterministic) when the store let it go,
    and ``recomputed`` then says so until a view has told the reader (``tell_recomputed``)."""

    recomputed = False

    def __getitem__(self, name):
        if name != "result":
            return super().__getitem__(name)
        stored = service.stored_analysis(self["key"])  # every view reads it: no config read or hash per read
        if stored is not None:
            return stored
        result, notes = service.analyze_text(self["spec"], self["prompt"], **self["options"])
        if any(n.key == "note.analysis_recomputed" for n in notes):
            self.recomputed = True
        return result

    def __contains__(self, name) -> bool:
        return name == "result" or super().__contains__(name)

    def extended(self, **more) -> "AnalysisRef":
        """The same reference with more of the session's small things (``{**ref}`` would lose ``result``)."""
        return AnalysisRef(self, **more)


def tell_recomputed(w: Words, state: dict | None) -> None:
    """Say once that an analysis a view needed had been evicted and was computed again."""
    if isinstance(state, AnalysisRef) and state.recomputed:
        state.recomputed = False
        w.info("note.analysis_recomputed")


def analysis_state(w: Words, spec: str, prompt: str, prefix_len: int = 0, window: int = 0, backend: str = "auto",
                   device: str = "cpu", dtype: str = "auto", where: str = "", progress=None,
                   cancelled=None) -> AnalysisRef:
    """A spec, a prompt and the options -> what every view of one analysis draws from (bad input: gr.Error,
    its message prefixed with ``where`` when given). The analysis goes into the server's store; the session
    keeps only the request (``AnalysisRef``)."""
    model = api.spec(w, spec)
    options = dict(prefix_len=prefix_len, window=window, backend=backend, device=device, dtype=dtype)
    try:
        api.run(w, service.analyze_text, model, prompt, progress=progress, cancelled=cancelled, where=where,
                lang=w.lang, **options)
    except Cancelled as e:
        raise gr.Error(w("error.cancelled", detail=str(e))) from None
    key, _ = service.request_key(model, prompt, **options)
    return AnalysisRef(spec=model, prompt=prompt, options=options, key=key, untrained=not model.trained,
                       backend=backend, device=device)
