"""What a head does: scores for the well-known head roles, from one head's weights.

Every score takes ``A``, one head's attention (T, T) with rows summing to 1 (query i attends
to key j with weight A[i, j]), and for token-dependent roles the token ids of the sequence.

- previous-token: the share of attention on (i, i-1) pairs.
- duplicate-token: the share on earlier keys j < i holding the same token as i.
- induction: the share on keys j whose *previous* token equals token i (j - 1 < i), i.e. the
  token that followed an earlier occurrence of the current token: "A B ... A -> attend B".
- These three follow TransformerLens ``detect_head`` with ``"mul"``: score = sum(A * P) / sum(A)
  over the queries that have at least one expected pair, where P is the 0/1 pattern.
- first-token (attention sink, Gu et al. 2024 / StreamingLLM): alpha_k = mean over i >= k of
  A[i, k]; the head sinks on key k when alpha_k > 0.3. ``sink_score`` returns alpha_0.
- entropy: mean over queries of -sum_j A[i, j] log A[i, j] (nats); low = focused.
- mean distance: mean over queries of sum_j A[i, j] |i - j| (tokens).
"""
from __future__ import annotations

import numpy as np

SINK_THRESHOLD = 0.3


def _share(A: np.ndarray, pattern: np.ndarray) -> float:
    rows = pattern.any(axis=1)
    if not rows.any():
        return 0.0
    return float((A[rows] * pattern[rows]).sum() / A[rows].sum())


def previous_token_pattern(T: int) -> np.ndarray:
    return np.eye(T, k=-1, dtype=bool)


def duplicate_token_pattern(tokens: np.ndarray) -> np.ndarray:
    tokens = np.asarray(tokens)
    same = tokens[:, None] == tokens[None, :]
    return np.tril(same, k=-1)


def induction_pattern(tokens: np.ndarray) -> np.ndarray:
    """The duplicate-token pattern shifted one key right: P[i, j] = 1 when token j-1 equals token i, j-1 < i."""
    duplicate = duplicate_token_pattern(tokens)
    pattern = np.zeros_like(duplicate)
    pattern[:, 1:] = duplicate[:, :-1]
    return pattern


def previous_token_score(A: np.ndarray) -> float:
    return _share(A, previous_token_pattern(A.shape[0]))


def duplicate_token_score(A: np.ndarray, tokens) -> float:
    return _share(A, duplicate_token_pattern(tokens))


def induction_score(A: np.ndarray, tokens) -> float:
    return _share(A, induction_pattern(tokens))


def sink_alphas(A: np.ndarray) -> np.ndarray:
    """alpha_k = mean over queries i >= k of A[i, k]. (T,)"""
    T = A.shape[0]
    lower = np.tril(np.ones((T, T)))
    return (A * lower).sum(axis=0) / lower.sum(axis=0)


def sink_score(A: np.ndarray) -> float:
    return float(sink_alphas(A)[0])


def entropy(A: np.ndarray) -> float:
    p = np.clip(A, 1e-12, 1.0)
    return float(-(A * np.log(p)).sum(axis=1).mean())


def mean_distance(A: np.ndarray) -> float:
    T = A.shape[0]
    dist = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
    return float((A * dist).sum(axis=1).mean())


def head_table(weights: np.ndarray, tokens) -> list[dict]:
    """Every head's scores. weights: (n_layer, nh, T, T) -> one dict per (layer, head)."""
    rows = []
    for layer, heads in enumerate(weights):
        for h, A in enumerate(heads):
            rows.append({"layer": layer, "head": h, "entropy": entropy(A), "mean_distance": mean_distance(A),
                         "previous_token": previous_token_score(A), "first_token_sink": sink_score(A),
                         "duplicate_token": duplicate_token_score(A, tokens), "induction": induction_score(A, tokens)})
    return rows
