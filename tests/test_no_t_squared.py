"""No Tq x Tk tensor: every op of an analysis at 4,096 tokens, and of the views read from it, is watched by a
``TorchDispatchMode``, and none may produce a tensor of more than T²/8 elements (a dense mask, a pattern check or a
bias would be T²; the MLP's hidden activations at d_ff = T/8 are T²/8 exactly). A failure names the op, its shape
and the playground lines that called it.

FlexAttention's compiled kernel (ALiBi, a window, a prefix) runs unwatched: under a dispatch mode dynamo falls back
to the eager kernel, which scores densely. Its own memory is ``bench long``'s ``rss_rise_32768_over_8192_tiny``
(2.85 measured, linear is 4); every op around it (its block mask, the bias, the rebuild, the views) is watched."""
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from playground.nn import flex
from playground.ui import service
from playground.ui.head_view import head_figures
from playground.ui.lang import Words
from playground.ui.session import analysis_state
from playground.zoo import ModelSpec

T = 4096


class LargeOutputs(TorchDispatchMode):
    """Records every op whose output has more than ``limit`` elements, with the playground frames that called it."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.found = limit, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor) and o.numel() > self.limit:
                callers = [f"{f.filename.split('/playground/')[-1]}:{f.lineno}" for f in traceback.extract_stack()
                           if "/playground/" in f.filename]
                self.found.append(f"{func} -> {tuple(o.shape)} from {' < '.join(reversed(callers[-4:]))}")
        return out


def test_a_causal_decoders_analysis_at_4096_tokens_builds_nothing_of_t_squared():
    spec = ModelSpec.parse("zoo:baseline")
    ids = spec.tokenizer().encode("all the world's a stage, and all the men and women merely players " * 400)[:T]
    text = spec.tokenizer().decode(ids)
    guard = LargeOutputs(T * T // 8)
    with guard:
        result, _ = service.analyze_text(spec, text)
    assert len(result.token_ids) == T
    assert not guard.found, "\n".join(guard.found[:10])


def test_the_guard_sees_a_dense_mask():
    """The same guard on the rule's dense mask at T: what the analysis above must not build."""
    from playground.nn.masks import MaskRule, positions

    guard = LargeOutputs(T * T // 8)
    with guard:
        MaskRule("causal").dense(positions(0, T), positions(0, T))
    assert guard.found and "(4096, 4096)" in guard.found[0]


@pytest.fixture
def flex_unwatched(monkeypatch):
    """FlexAttention's compiled kernel called outside the guard (see the module's docstring)."""
    compiled = flex._compiled_flex

    def unwatched():
        kernel = compiled()

        def call(*args, **kwargs):
            with _disable_current_modes():
                return kernel(*args, **kwargs)
        return call
    monkeypatch.setattr(flex, "_compiled_flex", unwatched)


def _text(spec: ModelSpec, n: int) -> str:
    ids = spec.tokenizer().encode("all the world's a stage, and all the men and women merely players " * 400)[:n]
    return spec.tokenizer().decode(ids)


@pytest.mark.filterwarnings("ignore:Decoder input:UserWarning")  # the encoder-decoder's note, shown outside a page
@pytest.mark.parametrize("spec, options, kind", [
    ("untrained:decoder/MHA/alibi", dict(window=64), "self"),     # ALiBi and a sliding window
    ("untrained:prefix/MHA/rope", dict(prefix_len=1000), "self"),  # GLM's prefix
    ("untrained:encdec/MHA/rope", {}, "cross"),                    # a 4,096-token source, cross-attention over it
])
def test_other_families_and_their_views_at_4096_tokens_build_nothing_of_t_squared(flex_unwatched, spec, options,
                                                                                   kind):
    """The analysis, then the head map, a zoom and the head statistics read from it."""
    w, text = Words(None), _text(ModelSpec.parse(spec), T)
    guard = LargeOutputs(T * T // 8)
    with guard:
        state = analysis_state(w, spec, text, options.get("prefix_len", 0), options.get("window", 0))
        result = state.result(w)
        head_figures(w, state, kind, 0, 1)
        Tq = next(m.shape[1] for m in result.maps if m.kind == kind)
        head_figures(w, state, kind, 1, 0, {"rows": [0, min(Tq, 300)], "cols": [T - 300, T]})
        result.head_stats(kind)
    assert max(len(result.token_ids), len(result.source_ids)) == T
    assert not guard.found, "\n".join(guard.found[:10])


def test_the_logit_lens_at_4096_tokens_builds_nothing_of_t_squared():
    """Each layer's logits are read a chunk of positions at a time: never (L, T, V), which at a vocabulary of half
    of T is past T²/8 for one layer alone."""
    from playground.inspect.logit_lens import logit_lens

    spec = ModelSpec.parse("zoo:baseline")
    ids = spec.tokenizer().encode(_text(spec, T))
    model = service.load(spec).model
    guard = LargeOutputs(T * T // 8)
    with guard:
        lens = logit_lens(model, ids[:T])
    assert lens.top_ids.shape[:2] == (model.cfg.n_layer, T)
    assert not guard.found, "\n".join(guard.found[:10])


def test_value_norms_ablation_and_generation_at_4096_tokens_build_nothing_of_t_squared():
    """The per-head and per-layer norms are pooled tile by tile: never (L, nh, T, T), nor (T, T) for one layer. Head
    ablation's forwards and a generation's prompt and steps (each one query row over the cache) hold no T x T."""
    from playground.inspect.ablation import ablate_heads
    from playground.inspect.attribution import value_norms
    from playground.ui.service.timelines import decode_timeline

    spec = ModelSpec.parse("zoo:baseline")
    ids = spec.tokenizer().encode(_text(spec, T))
    model = service.load(spec).model
    guard = LargeOutputs(T * T // 8)
    with guard:
        vn = value_norms(model, ids[:T], cells=64)
        ablation = ablate_heads(model, ids[:T])
        timeline, _ = decode_timeline(spec, spec.tokenizer().decode(ids[:T - 2]), 2)
    assert ablation.d_loss.shape == (model.cfg.n_layer, model.cfg.n_heads) and len(timeline.rows) == 2
    assert vn.per_head.shape == (model.cfg.n_layer, model.cfg.n_heads, 64, 64) and vn.rows[-1] == T
    assert not guard.found, "\n".join(guard.found[:10])
