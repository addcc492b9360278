"""Generation: greedy, temperature, top-k and top-p sampling, with or without the KV cache.

``stream`` yields one ``DecodeStep`` per new token, so a page can show tokens as they come.
With ``record=True`` each step also carries the new query's attention row in every layer and
head; every step carries the cache bytes after it, held and allocated: the data of a decode timeline.

With the cache, the prompt is run once (prefill) and each step feeds one token at its absolute
position; without it, every step re-runs the whole sequence. Both give the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from playground.models.base import LanguageModel, ModelOutput
from playground.models.hf.model import HubModel
from playground.train.tasks import BOS_ID


@dataclass
class DecodeStep:
    index: int          # 0 for the first new token
    token: int
    logits: Tensor      # (V,) float32, the logits the token was chosen from
    cache_bytes: int    # bytes of the positions the model's caches hold after this step; 0 without a cache
    cache_bytes_allocated: int  # bytes of the cache tensors as allocated (tensor.nbytes), >= cache_bytes
    attention: dict[str, np.ndarray] | None = None  # kind -> (n_layer, nh, Tk): the new query's rows (pooled past
                                                    # ROW_CELLS keys)
    keys_held: int = 0  # the keys the new query's self-attention saw (Tk before pooling)


@dataclass
class Generation:
    prompt: list[int]
    tokens: list[int]            # the new tokens
    steps: list[DecodeStep]


def sample_next(logits: Tensor, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Pick the next token from logits (B, V) -> (B,). temperature 0 is greedy."""
    if temperature < 0 or not 0.0 < top_p <= 1.0 or top_k < 0:
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(dim=-1) - probs > top_p  # keep the smallest set whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


ROW_CELLS = 512  # a step's row over a long cache is kept as at most this many key cells (max over each)


def pool_row(row: np.ndarray, cells: int = ROW_CELLS) -> np.ndarray:
    """A row of weights over Tk keys (..., Tk) as at most ``cells`` cells of ceil(Tk / cells) keys, the max of each
    (the value of largest magnitude for signed implicit attention); unchanged when it fits."""
    tk = row.shape[-1]
    if tk <= cells:
        return row
    cell = -(-tk // cells)
    padded = np.pad(row, [(0, 0)] * (row.ndim - 1) + [(0, (-tk) % cell)])
    blocks = padded.reshape(*row.shape[:-1], -1, cell)
    hi, lo = blocks.max(-1), blocks.min(-1)
    return np.where(np.abs(hi) >= np.abs(lo), hi, lo)


def _keys_held(out: ModelOutput) -> int:
    """How many keys the new query's self-attention (or implicit attention) saw in this forward."""
    return next((rec.source.shape[-1] for rec in out.attentions if rec.kind not in ("encoder_self", "cross")), 0)


def _rows(out: ModelOutput) -> dict[str, np.ndarray]:
    """The last query's attention in every layer: kind -> (n_layer, nh, Tk), rebuilt for that row alone (a long
    prompt's prefill never builds its T x T), pooled to ``ROW_CELLS`` key cells past that many keys. A layer whose
    cache holds only the newest keys (a sliding window's) has its row placed at those keys' positions, 0 before."""
    rows: dict[str, list] = {}
    for rec in out.attentions:
        if rec.kind != "encoder_self":
            _, _, Tq, Tk = rec.source.shape
            row = rec.source.tile(Tq - 1, Tq, 0, Tk)[:, 0].float().cpu().numpy()  # (nh, Tk)
            rows.setdefault(rec.kind, []).append((rec.source.k_start if rec.kind != "cross" else 0, row))
    out_rows = {}
    for kind, layers in rows.items():
        first = min(start for start, _ in layers)  # layers that hold fewer keys start later: aligned by position
        placed = [np.pad(row, [(0, 0), (start - first, 0)]) for start, row in layers]
        width = max(r.shape[-1] for r in placed)
        out_rows[kind] = pool_row(np.stack([np.pad(r, [(0, 0), (0, width - r.shape[-1])]) for r in placed]))
    return out_rows


def decoder_start(model, bos_id: int = BOS_ID) -> int:
    """The token an encoder-decoder's decoder starts from: a checkpoint's own (``decoder_start_token_id``), else
    ``bos_id`` (the playground's models)."""
    return model.start_id if isinstance(model, HubModel) else bos_id


def stream(model: LanguageModel, prompt: list[int], max_new_tokens: int, *, temperature: float = 0.0,
           top_k: int = 0, top_p: float = 1.0, use_cache: bool = True, seed: int | None = None,
           record: bool = False, prefix_len: int | None = None, bos_id: int = BOS_ID,
           stop_id: int | None = None) -> Iterator[DecodeStep]:
    """Yield new tokens one by one.

    Args:
        prompt: token ids; for an encoder-decoder, the source (the decoder starts from bos_id).
        prefix_len: prefix family: tokens seen bidirectionally (default: the whole prompt).
        stop_id: stop after yielding this token.
    """
    if not prompt:
        raise ValueError("the prompt is empty: give at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    cfg = model.cfg
    if cfg.family == "encoder":
        raise ValueError("an encoder-only model fills in masked tokens; it does not generate text after a prompt")
    encdec = cfg.family == "encdec"
    if encdec:
        bos_id = decoder_start(model, bos_id)
    seq = [bos_id] if encdec else list(prompt)  # the sequence the decoder stack sees
    total = len(seq) + max_new_tokens
    if cfg.position == "learned" and max(total - 1, len(prompt)) > cfg.context_length:
        raise ValueError(f"learned positions stop at {cfg.context_length}: prompt ({len(prompt)}) + new tokens "
                         f"({max_new_tokens}) is too long; shorten one of them")
    kwargs = {}
    if cfg.family == "prefix":
        kwargs["prefix_len"] = len(prompt) if prefix_len is None else prefix_len
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    src = torch.tensor([prompt], device=device)

    @torch.no_grad()
    def run(ids: list[int], start_pos: int, memory: Tensor | None) -> ModelOutput:
        x = torch.tensor([ids], device=device)
        if encdec:  # only the last position's logits are read
            return model.decode(x, memory, start_pos=start_pos, capture=record, logits="last")
        return model(x, start_pos=start_pos, capture=record, logits="last", **kwargs)

    model.eval()
    if use_cache:
        model.setup_cache(batch=1, max_len=total)
    try:
        with torch.no_grad():
            memory = model.encode(src)[0] if encdec else None
        out = run(seq, 0, memory)
        for i in range(max_new_tokens):
            logits = out.logits[0, -1].float()
            token = int(sample_next(logits[None], temperature, top_k, top_p, generator)[0])
            yield DecodeStep(i, token, logits, model.cache_bytes(), model.cache_bytes_allocated(),
                             _rows(out) if record else None, _keys_held(out) if record else 0)
            seq.append(token)
            if token == stop_id or i == max_new_tokens - 1:
                break
            out = run([token], len(seq) - 1, memory) if use_cache else run(seq, 0, memory)
    finally:
        if use_cache:
            model.clear_cache()


def generate(model: LanguageModel, prompt: list[int], max_new_tokens: int, **kwargs) -> Generation:
    """Run ``stream`` to the end: all new tokens and every step."""
    steps = list(stream(model, prompt, max_new_tokens, **kwargs))
    return Generation(list(prompt), [s.token for s in steps], steps)
