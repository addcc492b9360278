"""What a head does: scores for the well-known head roles, from one head's weights.

Every score takes ``A``, one head's attention (T, T) with rows summing to 1 (query i attends to
key j with weight A[i, j]), and, for the token-dependent roles, the sequence's T token ids.

Role scores use a 0/1 pattern P (T, T) of the (query, key) pairs the role expects, the
patterns of TransformerLens ``detect_head``:

- previous-token: P[i, j] = 1 when j = i - 1.
- duplicate-token: P[i, j] = 1 when j < i and token j equals token i.
- induction: P[i, j] = 1 when 1 <= j <= i and token j-1 equals token i: the key right after an
  earlier copy of the current token ("A B ... A -> attend B").

and the share of attention on those pairs, over Q, the queries that have at least one expected key:

    score = sum_{i in Q} sum_j A[i, j] P[i, j] / sum_{i in Q} sum_j A[i, j]

(0 when no query has one: a prompt without repeats has no duplicate or induction pairs).
TransformerLens's "mul" score, sum(A * P) / sum(A), divides by every row instead; the two agree
when every query has an expected key, and ours lets a perfect head score 1 whatever the prompt
(query 0 never has a previous token, and only a repeat's second half has induction keys).

Position-only scores, over every query:

- first-token sink (Gu et al. 2024, StreamingLLM): alpha_k = mean over i >= k of A[i, k]; a head
  sinks on key k when alpha_k > 0.3. ``sink_score`` is alpha_0, the mean of column 0.
- entropy: mean over i of -sum_j A[i, j] ln A[i, j] (nats; 0 = one key, ln(i + 1) = uniform causal).
- mean distance: mean over i of sum_j A[i, j] |i - j| (tokens).
"""
from __future__ import annotations

import numpy as np

SINK_THRESHOLD = 0.3


def role_share(A: np.ndarray, pattern: np.ndarray) -> float:
    """sum(A * P) / sum(A) over the queries (rows) with at least one expected key; 0 when none has one."""
    if A.shape != pattern.shape or A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"attention {A.shape} and pattern {pattern.shape} must be the same (T, T)")
    rows = pattern.any(axis=1)
    if not rows.any():
        return 0.0
    return float((A[rows] * pattern[rows]).sum() / A[rows].sum())


def previous_token_pattern(T: int) -> np.ndarray:
    """P[i, i-1] = 1. (T, T) bool"""
    return np.eye(T, k=-1, dtype=bool)


def duplicate_token_pattern(tokens) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be one sequence of ids, got shape {tokens.shape}")
    same = tokens[:, None] == tokens[None, :]
    return np.tril(same, k=-1)  # P[i, j] = 1 when j < i and token j equals token i. (T, T) bool


def induction_pattern(tokens) -> np.ndarray:
    """The duplicate-token pattern shifted one key right: P[i, j] = 1 when 1 <= j <= i and token j-1 equals token i."""
    duplicate = duplicate_token_pattern(tokens)
    pattern = np.zeros_like(duplicate)
    pattern[:, 1:] = duplicate[:, :-1]
    return pattern


def previous_token_score(A: np.ndarray) -> float:
    """Share of attention on key i-1, over queries 1..T-1."""
    return role_share(A, previous_token_pattern(A.shape[0]))


def duplicate_token_score(A: np.ndarray, tokens) -> float:
    """Share of attention on earlier copies of the query's token, over queries whose token repeats an earlier one."""
    return role_share(A, duplicate_token_pattern(tokens))


def induction_score(A: np.ndarray, tokens) -> float:
    """Share of attention on keys right after an earlier copy of the query's token, over queries that have one."""
    return role_share(A, induction_pattern(tokens))


def sink_alphas(A: np.ndarray) -> np.ndarray:
    """alpha_k = mean over queries i >= k of A[i, k]. (T,)"""
    T = A.shape[0]
    lower = np.tril(np.ones((T, T)))
    return (A * lower).sum(axis=0) / lower.sum(axis=0)


def sink_score(A: np.ndarray) -> float:
    """alpha_0: the mean over all queries of the attention on token 0."""
    return float(sink_alphas(A)[0])


def entropy(A: np.ndarray) -> float:
    """Mean over queries of -sum_j A[i, j] ln A[i, j], in nats (0 ln 0 = 0)."""
    p = np.clip(A, 1e-12, 1.0)
    return float(-(A * np.log(p)).sum(axis=1).mean())


def mean_distance(A: np.ndarray) -> float:
    """Mean over queries of sum_j A[i, j] |i - j|, in tokens."""
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
