"""Inside one head of a Hub model (any transformers architecture): the head step by step from what its attention
function received.

The playground's own models are stepped from x through their projections (``step_through``). A transformers model
computes q, k and v in its own code (RoPE, QK-norm, MLA's decompression, partial rotary), so its steps start where
the attention function starts, from the record of the same forward::

    q, k, v     as the layer handed them to the attention function (k and v of K/V head g = h // (nh / n_kv))
    scores      q . k                                                                            (Tq, Tk)
    scaled      scores x the layer's scaling
    capped      soft-capping only (Gemma 2): c tanh(s / c)
    biased      a relative position bias only (T5): + its bias for key - query
    masked      -inf where the layer's rule forbids the pair
    weights     softmax over the keys (and the sink logit, gpt-oss, whose share takes weight but no value)
    output      weights @ v
    write       output W_O[:, h]^T, where the layer keeps W_O in its attention module

The weights equal the record's rebuilt ones (a test checks it), so the steps are the model's own numbers.

Glossary: Tq queries, Tk keys, nh query heads, n_kv K/V heads, hs head dim (dv of the values), d model width.
"""
from __future__ import annotations

import torch

from playground.errors import InputError
from playground.inspect.step_through import HEAD, KEY, MODEL, QUERY, HeadSteps, Step, _ids, _index, kv_groups
from playground.models.hf.model import HubModel


def hub_kinds(model: HubModel) -> list[str]:
    return ["encoder_self", "decoder_self", "cross"] if model.encoder_decoder else ["self"]


@torch.no_grad()
def hub_layer_steps(model: HubModel, ids, layer: int, *, query: int = 0, kind: str | None = None, source_ids=None,
                    heads: list[int] | None = None) -> list[HeadSteps]:
    """``step_through.layer_steps`` for a Hub model: the chosen heads of one attention layer, from one forward."""
    kinds = hub_kinds(model)
    kind = kind or kinds[1 if model.encoder_decoder else 0]
    if kind not in kinds:
        raise InputError("error.step_kind", kind=kind, kinds=", ".join(kinds))
    target = _ids(ids)
    if model.encoder_decoder and source_ids is None:
        raise InputError("error.step_source")
    source = _ids(source_ids) if model.encoder_decoder else []
    if model.encoder_decoder:
        out = model(torch.tensor([source]), torch.tensor([target]), capture=True, logits="none")
    else:
        out = model(torch.tensor([target]), capture=True, logits="none")
    calls = [(rec, module) for rec, module in zip(out.attentions, model.settings.modules) if rec.kind == kind]
    layer = _index("error.step_layer", layer, len(calls))
    rec, module = calls[layer]
    src = rec.source
    nh, n_kv = src.n_heads, src.n_kv_heads
    heads = [_index("error.step_head", h, nh) for h in (range(nh) if heads is None else heads)]
    query_tokens = source if kind == "encoder_self" else target
    key_tokens = source if kind in ("encoder_self", "cross") else target
    query = _index("error.step_query", query, len(query_tokens))
    groups = kv_groups(nh, n_kv)
    result = []
    for head in heads:
        g = head // (nh // n_kv)
        steps = _head(model, rec, module, head, g)
        result.append(HeadSteps(kind, layer, head, g, groups[g], query, query_tokens, key_tokens, steps))
    return result


def _head(model: HubModel, rec, module, head: int, g: int) -> list[Step]:
    src = rec.source
    q = src.q[0, head].double()  # (Tq, hs)
    k = src.k[0, g].double()     # (Tk, hs)
    v = rec.check[0][0, g].double()  # (Tk, dv)
    _, _, Tq, Tk = src.shape
    steps = [Step("q", "q = what the layer hands the attention function (after RoPE, QK-norm, ...)", q, (QUERY, HEAD)),
             Step("k", f"k = the same, K/V head {g}", k, (KEY, HEAD)),
             Step("v", f"v = the same, K/V head {g}", v, (KEY, HEAD))]
    scores = q @ k.T  # (Tq, Tk)
    scaled = scores * src.score_scale
    steps += [Step("scores", "s = q · k", scores, (QUERY, KEY)),
              Step("scaled", f"s × {src.score_scale:.6g}  (the layer's scaling)", scaled, (QUERY, KEY))]
    if src.softcap:
        scaled = src.softcap * torch.tanh(scaled / src.softcap)
        steps.append(Step("capped", f"{src.softcap:g} · tanh(s / {src.softcap:g})  (soft-capping)", scaled,
                          (QUERY, KEY)))
    if src.rel_bias is not None:
        scaled = scaled + src.rel_bias_tile(0, Tq, 0, Tk, torch.tensor([head]))[0].double()
        steps.append(Step("biased", "s + b(j − i)  (relative position bias)", scaled, (QUERY, KEY)))
    mask = src.mask_tile(0, Tq, 0, Tk)  # (Tq, Tk) bool, padding included
    masked = scaled.masked_fill(~mask.cpu(), float("-inf"))
    if src.sinks is not None:  # the sink logit joins every row's sum and takes its share of the weight
        sink = src.sinks[head].double()
        lse = torch.logaddexp(masked.logsumexp(-1), sink)
        weights = (masked - lse[:, None]).exp()
        formula = f"a = softmax over the keys and the sink logit {float(sink):.4g} (its share is 1 − Σ a)"
    else:
        weights = torch.softmax(masked, dim=-1)
        formula = "a = softmax over keys"
    out = weights.nan_to_num(0.0) @ v  # (Tq, dv)
    steps += [Step("masked", "−∞ where the mask forbids query i to see key j", masked, (QUERY, KEY)),
              Step("weights", formula, weights, (QUERY, KEY)),
              Step("output", "o = a v", out, (QUERY, HEAD))]
    try:
        w_o = model.output_weights(module, src.n_heads, v.shape[-1])[head].double()  # (dv, d)
        steps.append(Step("write", f"o W_O[:, {head}]ᵀ  (into the residual stream)", out @ w_o, (QUERY, MODEL)))
    except ValueError:  # the layer keeps W_O outside its attention module (BERT): the steps end at the output
        pass
    for s in steps:
        s.array = s.array.cpu().numpy()
    return steps
