"""Inside one head: the attention of a chosen layer and head, step by step, with the model's own numbers.

``step_through`` runs the model once on a prompt, reads the chosen attention layer's input (x, its
``AttentionInputs`` and, for cross-attention, the encoder's output) with a forward hook, so no
``forward`` changes, and recomputes that head from the layer's own weights, mask, RoPE angles and
ALiBi bias, keeping every intermediate (``layer_steps`` does every head of a layer from one pass)::

    x           the layer's input (pre-norm: the normed residual stream; post-norm: the raw one)  (T, d)
    q, k, v     x W_Q[h] + b_Q[h], and the same for K/V head g = h // (nh / n_kv)                (T, hs)
    q_rot, k_rot  RoPE only: q and k rotated by their positions
    scores      q . k                                                                            (Tq, Tk)
    scaled      scores / sqrt(hs)
    biased      ALiBi only: scaled - slope_h |i - j|
    masked      -inf where the layer's mask forbids the pair
    weights     softmax over keys (equals the weights the model records)
    output      weights @ v, the head's output                                                   (Tq, hs)
    write       output W_O[:, h]^T, the head's write into the residual stream                   (Tq, d)

Summed over every head, the writes plus o_proj's bias are the attention sublayer's output.
``kv_groups`` lists the query heads each K/V head serves (GQA, MQA), for an overview grouped by K/V head.
The steps are computed in float64 from the model's tensors (RoPE's rotation in float32, as the model does).

Glossary: T tokens, Tq queries, Tk keys, d model width, nh query heads, n_kv K/V heads, hs head dim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from playground.errors import InputError
from playground.models.base import LanguageModel
from playground.models.transformer import EncoderDecoder, TransformerLM
from playground.nn.latent_attention import LatentAttention
from playground.nn.attention import Attention, AttentionInputs
from playground.nn.position import apply_rope

QUERY, KEY, MODEL, HEAD = "query token", "key token", "model dimension", "head dimension"


@dataclass
class Step:
    """One step of the head's computation: its name, its formula, its array and what each axis means."""

    name: str
    formula: str
    array: np.ndarray        # float64
    axes: tuple[str, ...]    # one meaning per axis, e.g. ("query token", "key token")


@dataclass
class HeadSteps:
    """Every step of one head on one prompt, and where the head sits among the others.

    ``query`` is the token the page highlights; ``row(name)`` is that token's row of a step whose
    first axis is the query.
    """

    kind: str                 # self | encoder_self | decoder_self | cross
    layer: int
    head: int
    kv_head: int              # the K/V head this query head reads
    shared_by: list[int]      # the query heads that read the same K/V head (this one included)
    query: int
    query_tokens: list[int]   # the ids along the query axis
    key_tokens: list[int]     # the ids along the key axis (the encoder's for cross-attention)
    steps: list[Step] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step {name!r}; the steps are {self.names}")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.step(name).array

    def to_dict(self) -> dict:
        """JSON-ready: every array as nested lists, with None where a masked score is -inf."""
        head = {k: getattr(self, k) for k in ("kind", "layer", "head", "kv_head", "shared_by", "query",
                                              "query_tokens", "key_tokens")}
        steps = [dict(name=s.name, formula=s.formula, axes=list(s.axes), array=_finite_or_none(s.array))
                 for s in self.steps]
        return {**head, "steps": steps}

    def row(self, name: str) -> np.ndarray:
        """The highlighted query's row of a step laid out query-first."""
        s = self.step(name)
        if s.axes[0] != QUERY:
            raise ValueError(f"step {name!r} has no query axis (its axes: {s.axes})")
        return s.array[self.query]


def _finite_or_none(array: np.ndarray) -> list:
    """Nested lists of floats, None where the value is not finite (JSON has no -inf)."""
    return np.where(np.isfinite(array), array, None).tolist()


def kv_groups(n_heads: int, n_kv_heads: int) -> list[list[int]]:
    """The query heads each K/V head serves, K/V head by K/V head: MHA [[0], [1], ...], MQA [[0, 1, ...]]."""
    group = n_heads // n_kv_heads
    return [list(range(g * group, (g + 1) * group)) for g in range(n_kv_heads)]


def attention_kinds(model: LanguageModel) -> list[str]:
    """The attention kinds a step-through can open in this model."""
    if isinstance(model, EncoderDecoder):
        return ["encoder_self", "decoder_self", "cross"]
    if isinstance(model, TransformerLM):
        return ["self"]
    raise InputError("error.step_family", family=model.cfg.family)


def _module(model: LanguageModel, kind: str, layer: int) -> Attention:
    if kind == "encoder_self":
        return model.encoder.blocks[layer].self_attn
    if kind == "cross":
        return model.decoder.blocks[layer].cross_attn
    return model.decoder.blocks[layer].self_attn


def _index(code: str, value, count: int) -> int:
    """value as an index in 0..count-1, else InputError(code, value, last)."""
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not whole or not 0 <= int(value) < count:
        raise InputError(code, value=value, last=count - 1)
    return int(value)


def _ids(ids) -> list[int]:
    out = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    if not out:
        raise InputError("error.step_ids")
    return out


def step_through(model: LanguageModel, ids, layer: int, head: int, *, query: int = 0, kind: str | None = None,
                 prefix_len: int = 0, source_ids=None) -> HeadSteps:
    """Run ``ids`` through ``model`` once and recompute one head of one attention layer step by step.

    Args:
        model: a Transformer (decoder, prefix or encoder-decoder).
        ids: the (decoder) token ids, a sequence of T ints.
        layer, head: which layer of the stack and which query head.
        query: the query token to highlight (an index along the query axis).
        kind: self (decoder, prefix), or encoder_self | decoder_self | cross (encoder-decoder;
            default decoder_self).
        prefix_len: prefix family only, the tokens seen bidirectionally.
        source_ids: encoder-decoder only, the encoder's token ids.
    Returns:
        ``HeadSteps``, its arrays float64 numpy.
    """
    head = _index("error.step_head", head, model.cfg.n_heads)
    return layer_steps(model, ids, layer, query=query, kind=kind, prefix_len=prefix_len,
                       source_ids=source_ids, heads=[head])[0]


@torch.no_grad()
def layer_steps(model: LanguageModel, ids, layer: int, *, query: int = 0, kind: str | None = None,
                prefix_len: int = 0, source_ids=None, heads: list[int] | None = None) -> list[HeadSteps]:
    """``step_through`` for several heads of one layer (default: every head, in order) from one forward pass."""
    cfg = model.cfg
    kinds = attention_kinds(model)
    kind = kind or ("decoder_self" if isinstance(model, EncoderDecoder) else "self")
    if kind not in kinds:
        raise InputError("error.step_kind", kind=kind, kinds=", ".join(kinds))
    layer = _index("error.step_layer", layer, cfg.n_layer)
    heads = [_index("error.step_head", h, cfg.n_heads) for h in (range(cfg.n_heads) if heads is None else heads)]
    target = _ids(ids)
    if isinstance(model, EncoderDecoder) and source_ids is None:
        raise InputError("error.step_source")
    source = _ids(source_ids) if isinstance(model, EncoderDecoder) else []
    query_tokens = source if kind == "encoder_self" else target
    key_tokens = source if kind in ("encoder_self", "cross") else target
    query = _index("error.step_query", query, len(query_tokens))

    attn = _module(model, kind, layer)
    if isinstance(attn, LatentAttention):
        raise InputError("error.step_mla")
    seen = _capture(model, attn, target, source, prefix_len)
    groups = kv_groups(cfg.n_heads, cfg.n_kv_heads)
    out = []
    for head in heads:
        steps = _head_steps(attn, seen["x"][0], seen["memory"], seen["inputs"], head, cfg.norm_placement)
        kv_head = head // (cfg.n_heads // cfg.n_kv_heads)
        out.append(HeadSteps(kind, layer, head, kv_head, groups[kv_head], query, query_tokens, key_tokens, steps))
    return out


@torch.no_grad()
def _capture(model: LanguageModel, attn: Attention, target: list[int], source: list[int], prefix_len: int) -> dict:
    """One forward pass at inference (dropout off; the model keeps its mode); ``attn``'s call: x, inputs, memory."""
    seen: dict = {}

    def hook(module, args, kwargs, output):
        call = dict(zip(("x", "inputs", "memory"), args), **kwargs)
        seen.update(x=call["x"], inputs=call["inputs"], memory=call.get("memory"))

    handle = attn.register_forward_hook(hook, with_kwargs=True)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        tgt = torch.tensor([target], device=device)
        if isinstance(model, EncoderDecoder):
            model(torch.tensor([source], device=device), tgt)
        else:
            model(tgt, prefix_len=prefix_len)
    finally:
        handle.remove()
        model.train(was_training)
    return seen


def _rows(weight: Tensor, bias: Tensor | None, index: int, size: int) -> tuple[Tensor, Tensor | None]:
    """One head's slice of a projection: W (hs, d) and b (hs,) or None."""
    rows = slice(index * size, (index + 1) * size)
    return weight[rows].double(), None if bias is None else bias[rows].double()


def _project(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    y = x @ weight.T  # (T, hs)
    return y if bias is None else y + bias


def _head_steps(attn: Attention, x: Tensor, memory: Tensor | None, inputs: AttentionInputs, head: int,
                placement: str) -> list[Step]:
    """The steps of query head ``head`` of ``attn``, from its input x (T, d) and, for cross, memory (1, S, d)."""
    hs = attn.head_dim
    g = head // (attn.n_heads // attn.n_kv_heads)
    x = x.double()  # (T, d)
    source = memory[0].double() if attn.cross else x  # (Tk, d)
    q = _project(x, *_rows(attn.q_proj.weight, attn.q_proj.bias, head, hs))       # (Tq, hs)
    k = _project(source, *_rows(attn.k_proj.weight, attn.k_proj.bias, g, hs))     # (Tk, hs)
    v = _project(source, *_rows(attn.v_proj.weight, attn.v_proj.bias, g, hs))     # (Tk, hs)
    where = "the normed residual stream (pre-norm)" if placement == "pre" else "the raw residual stream (post-norm)"
    steps = [Step("x", f"x = {where}", x, (QUERY, MODEL))]
    if attn.cross:
        steps.append(Step("memory", "memory = the encoder's output", source, (KEY, MODEL)))
    steps += [Step("q", f"q = x W_Q[{head}] + b_Q[{head}]", q, (QUERY, HEAD)),
              Step("k", f"k = {'memory' if attn.cross else 'x'} W_K[{g}] + b_K[{g}]", k, (KEY, HEAD)),
              Step("v", f"v = {'memory' if attn.cross else 'x'} W_V[{g}] + b_V[{g}]", v, (KEY, HEAD))]
    if inputs.rope is not None and not attn.cross:
        cos, sin = (t.double() for t in inputs.rope)  # (T, hs)
        q = apply_rope(q[None, None], cos, sin)[0, 0]  # (Tq, hs)
        k = apply_rope(k[None, None], cos, sin)[0, 0]  # (Tk, hs)
        rotation = "{0}' = {0} cos(pos θ) + rotate_half({0}) sin(pos θ)"
        steps += [Step("q_rot", rotation.format("q"), q, (QUERY, HEAD)),
                  Step("k_rot", rotation.format("k"), k, (KEY, HEAD))]
    r = "'" if inputs.rope is not None and not attn.cross else ""
    scores = q @ k.T  # (Tq, Tk)
    scaled = scores / math.sqrt(hs)
    steps += [Step("scores", f"s = q{r} · k{r}", scores, (QUERY, KEY)),
              Step("scaled", f"s / √{hs}", scaled, (QUERY, KEY))]
    if inputs.bias is not None:
        scaled = scaled + inputs.bias[head].double()  # (Tq, Tk)
        steps.append(Step("biased", f"s / √{hs} − m_{head} |i − j|  (ALiBi)", scaled, (QUERY, KEY)))
    mask = inputs.mask if inputs.mask.dim() == 2 else inputs.mask[0, 0]  # (Tq, Tk) bool
    masked = scaled.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(masked, dim=-1)  # (Tq, Tk)
    out = weights @ v  # (Tq, hs)
    w_o = attn.o_proj.weight[:, head * hs:(head + 1) * hs].double()  # (d, hs)
    steps += [Step("masked", "−∞ where the mask forbids query i to see key j", masked, (QUERY, KEY)),
              Step("weights", "a = softmax over keys", weights, (QUERY, KEY)),
              Step("output", "o = a v", out, (QUERY, HEAD)),
              Step("write", f"o W_O[:, {head}]ᵀ  (into the residual stream)", out @ w_o.T, (QUERY, MODEL))]
    for s in steps:
        s.array = s.array.cpu().numpy()
    return steps
