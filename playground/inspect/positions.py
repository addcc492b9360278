"""Data for the position-encoding lab: the encodings themselves, and how each zoo model's loss
changes with position up to 4x its training length ("train short, test long").

The loss-by-position curves are computed by the trainer on the held-out works and stored in
each model's card (``loss_by_position_4x``); ``python -m playground.train --zoo NAME --force``
recomputes them.
"""
from __future__ import annotations

import numpy as np
import torch

from playground import zoo
from playground.models.checkpoint import read_card
from playground.nn.position import alibi_bias, alibi_slopes, rope_angles, rope_frequencies, sinusoidal_table

PE_MODELS = {"rope": "baseline", "sinusoidal": "sinusoidal", "learned": "learned", "alibi": "alibi", "none": "nope"}


def sinusoidal_matrix(n_positions: int = 128, d_model: int = 128) -> np.ndarray:
    """(n_positions, d_model) the table added to token embeddings."""
    return sinusoidal_table(torch.arange(n_positions), d_model).numpy()


def rope_angle_matrix(n_positions: int = 128, head_dim: int = 32, base: float = 10000.0) -> np.ndarray:
    """(n_positions, hs/2) rotation angle of each dimension pair, in radians mod 2π."""
    cos, sin = rope_angles(torch.arange(n_positions), head_dim, base)
    angles = torch.atan2(sin, cos)[:, : head_dim // 2]
    return torch.remainder(angles, 2 * np.pi).numpy()


def rope_score_by_offset(max_offset: int = 512, head_dim: int = 32, base: float = 10000.0) -> np.ndarray:
    """q·k of RoPE-rotated all-ones vectors against their offset m - n: 2 Σ_i cos(Δ θ_i). (max_offset + 1,)

    The same for every (m, n) with that offset, which is RoPE's point; the decay with distance
    is the "long-term decay" of the RoFormer paper.
    """
    theta = rope_frequencies(head_dim, base).numpy()
    offsets = np.arange(max_offset + 1)
    return 2 * np.cos(offsets[:, None] * theta[None, :]).sum(axis=1)


def alibi_matrix(n_heads: int = 4, n_positions: int = 32, head: int = 0) -> np.ndarray:
    """(n_positions, n_positions) ALiBi bias of one head under a causal mask (-inf above the diagonal)."""
    pos = torch.arange(n_positions)
    bias = alibi_bias(alibi_slopes(n_heads), pos, pos)[head].numpy()
    return np.where(np.tril(np.ones_like(bias, dtype=bool)), bias, np.nan)


def learned_similarity(name: str = "learned") -> np.ndarray:
    """Cosine similarity of a zoo model's learned position embeddings. (T, T)"""
    model = zoo.load(name)
    if model.decoder.pos_emb is None:
        raise ValueError(f"zoo model {name!r} has no learned position embeddings")
    emb = model.decoder.pos_emb.weight.detach()
    emb = emb / emb.norm(dim=1, keepdim=True)
    return (emb @ emb.T).numpy()


def loss_by_position() -> dict[str, dict]:
    """position encoding -> {"model", "train_length", "loss": list (nats/token per position up to 4T)}."""
    out = {}
    for pe, name in PE_MODELS.items():
        if name not in zoo.available():
            continue
        card = read_card(zoo.MODELS_DIR / name)
        train_length = zoo.entry_configs(name)[0].context_length
        curve = card.get("loss_by_position_4x")
        out[pe] = {"model": name, "train_length": train_length, "loss": curve,
                   "note": card.get("val_4x_note", "")}
    return out
