"""Corrections to raw attention weights: value-weighted norms and attention rollout.

Value-weighted norms (Kobayashi et al. 2020, "Attention is Not Only a Weight"). Head h of a layer
writes into the residual stream ``sum_j A^h_ij f_h(x_j)`` (plus the output bias, the same for every
token, left out), where x_j is the attention sublayer's input at token j (after the norm, in a pre-norm
model) and

    f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h

with W_O^h the rows of W_O that read head h (its slice of the o_proj input). A weight says how much
query i takes from token j; the norm says how large that contribution is:

    per head   N^h_ij = ||A^h_ij f_h(x_j)|| = A^h_ij ||f_h(x_j)||
    per layer  N_ij   = ||sum_h A^h_ij f_h(x_j)||

With GQA and MQA query head h reads the shared K/V head g = h // (n_heads / n_kv_heads): its V
(W_V^g, b_V^g) with query head h's slice W_O^h. A is the model's own captured weights.

Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"). Each layer's
heads are averaged and the residual connection added as an identity,

    A_hat^l = 0.5 mean_h A^{l,h} + 0.5 I,   rows renormalised to sum to 1,

and the layers are chained: R^l = A_hat^l A_hat^{l-1} ... A_hat^1. R^L[i, j] is how much of token j
reaches position i at the top. "Without the first token" (a first-token sink soaks up most of the
raw weight and so most of the rollout): every layer's mean_h A is restricted to tokens 1..T-1 (the
first key column and the first query row dropped), its rows renormalised to sum to 1, and the rollout
above computed over those T-1 tokens; the result is returned at full size (T, T), with row 0 and
column 0 zero.

Glossary: L layers, nh query heads, n_kv K/V heads, hs head dim, T tokens, d model width.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from playground.inspect.hooks import as_batch, blocks_of
from playground.inspect.tiles import Pooled, Pooler, cell_size, tile_side
from playground.models.base import LanguageModel
from playground.models.hf.model import HubModel
from playground.nn.rebuild import AttentionSource, tile_grid


@dataclass
class ValueNorms:
    """The norms of every self-attention layer, in cells of ``cell`` (queries x keys) over the T x T pairs: each
    cell the max or the mean (``how``) of the pairs it covers, the exact norm of each pair when ``cell`` is (1, 1)."""

    per_head: np.ndarray     # (L, nh, n, m) A^h_ij ||f_h(x_j)||
    per_layer: np.ndarray    # (L, n, m) ||sum_h A^h_ij f_h(x_j)||
    value_norms: np.ndarray  # (L, nh, T) ||f_h(x_j)||
    rows: np.ndarray         # (n + 1,) the first query of each row of cells, and T at the end
    cols: np.ndarray         # (m + 1,) the first key of each column of cells, and T at the end
    cell: tuple[int, int]
    how: str = "max"

    @property
    def exact(self) -> bool:
        return self.cell == (1, 1)

    def to_dict(self) -> dict:
        return {"per_head": self.per_head.tolist(), "per_layer": self.per_layer.tolist(),
                "value_norms": self.value_norms.tolist(), "rows": self.rows.tolist(), "cols": self.cols.tolist(),
                "cell": list(self.cell), "how": self.how}


def head_values(rec, w_o: torch.Tensor) -> torch.Tensor:
    """f_h(x_j) for every head and token of one self-attention record: the values its kernel read (per K/V head,
    x_j W_V + b_V, or MLA's W_UV,h c_j rebuilt from the latent) through W_O^h (nh, dv, d). (nh, T, d)"""
    v = rec.check[0][0]  # (n_kv, T, dv)
    nh, n_kv = rec.source.n_heads, v.shape[0]
    return v.repeat_interleave(nh // n_kv, dim=0) @ w_o.float().cpu()  # (nh, T, d): head h reads K/V head h // groups


def _head_values(model: LanguageModel, x: torch.Tensor, prefix_len: int) -> tuple[list, list]:
    """The self-attention records of one forward and f_h(x_j) per layer, from the values the attention saw and the
    layer's own W_O: a playground layer's o_proj, a Hub model's output projection whatever it is called."""
    if isinstance(model, HubModel):
        out = model(x, capture=True, logits="none")
        modules = model.settings.modules
    else:
        out = model(x, prefix_len=prefix_len, capture=True, logits="none")
        modules = [b.self_attn for b in blocks_of(model)]
    heads, records = [], []
    for rec, module in zip(out.attentions, modules):
        if rec.kind != "self":
            continue
        nh, dv = rec.source.n_heads, rec.check[0].shape[-1]
        if isinstance(model, HubModel):
            w_o = model.output_weights(module, nh, dv)
        else:
            w_o = module.o_proj.weight.view(-1, nh, dv).permute(1, 2, 0)  # (nh, dv, d): W_O^h
        heads.append(head_values(rec, w_o))
        records.append(rec)
    return records, heads


def layer_norms(src: AttentionSource, f: torch.Tensor, cells: int, batch: int = 0) -> tuple[Pooled, Pooled]:
    """One layer's norms, tile by tile over its source (no (T, T) array): the per-head and the per-layer cells.

    f: (nh, T, d) f_h(x_j). The per-layer norm of a pair is a quadratic form in the pair's weights,

        ||sum_h A^h_ij f_h(x_j)||² = sum_{h, g} A^h_ij A^g_ij G_j[h, g],   G_j[h, g] = f_h(x_j) . f_g(x_j),

    so a tile needs the (nh, nh) Gram matrix of each key (T nh² numbers, built once), not the (r, c, d) vectors.
    It is evaluated in float64: heads that cancel leave a small norm of large terms.
    Returns (per head (nh, n, m), per layer (1, n, m)) as ``inspect.tiles.Pooled``.
    """
    _, nh, Tq, Tk = src.shape
    f = f.double().cpu()
    fn = f.norm(dim=-1).float()  # (nh, Tk)
    gram = torch.einsum("htd,gtd->thg", f, f)  # (Tk, nh, nh)
    cell = (cell_size(Tq, cells), cell_size(Tk, cells))
    heads = Pooler(nh, (0, Tq), (0, Tk), cell, signed=False)
    layer = Pooler(1, (0, Tq), (0, Tk), cell, signed=False)
    for r0, r1, c0, c1 in tile_grid(Tq, Tk, tile_side(cell[0]), tile_side(cell[1])):
        if not bool(src.mask_tile(r0, r1, c0, c1, batch).any()):
            continue
        w = src.tile(r0, r1, c0, c1, batch=batch)  # (nh, r, c) float32
        heads.add(w * fn[:, None, c0:c1], r0, r1, c0, c1)
        wd = w.double().permute(2, 1, 0)  # (c, r, nh)
        square = (torch.bmm(wd, gram[c0:c1]) * wd).sum(-1).T  # (r, c)
        layer.add(square.clamp_(min=0).sqrt_().float()[None], r0, r1, c0, c1)
    return heads.result(), layer.result()


@torch.no_grad()
def value_norms(model: LanguageModel, ids, *, prefix_len: int = 0, cells: int | None = None,
                how: str = "max") -> ValueNorms:
    """Kobayashi et al.'s norms for every self-attention layer of one sequence ``ids`` (a list of T ids), in at most
    ``cells`` x ``cells`` cells per head (None: one per pair, exact), each the max or the mean (``how``)."""
    x = as_batch(model, ids)
    if x.shape[0] != 1:
        raise ValueError(f"value_norms reads one sequence, got a batch of {x.shape[0]}")
    if how not in ("max", "mean"):
        raise ValueError(f"pooling must be 'max' or 'mean', got {how!r}")
    model.eval()
    records, heads = _head_values(model, x, prefix_len)
    T = x.shape[1]
    per_head, per_layer, norms = [], [], []
    for rec, f in zip(records, heads):
        by_head, by_layer = layer_norms(rec.source, f, T if cells is None else cells)
        per_head.append(by_head.cells(how))
        per_layer.append(by_layer.cells(how)[0])
        norms.append(f.float().norm(dim=-1).cpu().numpy())  # (nh, T)
    return ValueNorms(np.stack(per_head), np.stack(per_layer), np.stack(norms), by_head.row_edges(),
                      by_head.col_edges(), by_head.cell, how)


def _renormalise(M: np.ndarray) -> np.ndarray:
    s = M.sum(-1, keepdims=True)
    return np.divide(M, s, out=np.zeros_like(M), where=s > 0)


def rollout(weights: np.ndarray, *, without_first: bool = False) -> np.ndarray:
    """Attention rollout of stacked weights (L, nh, T, T): (L, T, T), entry l the rollout R^{l+1} through
    layers 1..l+1 (the last is the whole model's). ``without_first``: over tokens 1..T-1 only (see the module)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"rollout needs weights of shape (layers, heads, T, T), got {weights.shape}")
    T = weights.shape[-1]
    lo = 1 if without_first else 0
    if T - lo < 1:
        raise ValueError("rollout without the first token needs at least two tokens")
    mean = weights.mean(axis=1)[:, lo:, lo:]  # (L, T', T')
    if without_first:
        mean = _renormalise(mean)
    eye = np.eye(T - lo)
    R, out = eye, []
    for A in mean:
        R = _renormalise(0.5 * A + 0.5 * eye) @ R  # (T', T')
        full = np.zeros((T, T))
        full[lo:, lo:] = R
        out.append(full)
    return np.stack(out)
