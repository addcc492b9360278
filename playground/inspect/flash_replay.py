"""FlashAttention, tile by tile: one head's forward pass replayed as the kernel computes it.

Follows Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient Exact Attention with
IO-Awareness" (Algorithm 0 for standard attention, Algorithm 1 and Theorem 2 for the tiled one),
and Dao 2023, "FlashAttention-2" (Algorithm 1: the loop order with query blocks outside).

Glossary of dimension names:
    N        sequence length (queries = keys, one head)
    d        head dimension
    M        on-chip memory budget, in elements (shared memory / SRAM of one SM)
    Br, Bc   rows of a query block, columns of a key block
    Tr, Tc   number of query blocks ceil(N / Br), of key blocks ceil(N / Bc)
    i, j     a query block, a key block

The online softmax, for query block i meeting key block j (S_ij = Q_i K_j^T / sqrt(d), (Br, Bc)):
    m' = max(m, rowmax S_ij)                                    (Br,)
    l' = e^(m - m') l + rowsum e^(S_ij - m')                    (Br,)
    O' = diag(e^(m - m')) O + e^(S_ij - m') V_j                 (Br, d)
and after the last key block O_i = diag(l)^-1 O. The result equals softmax(Q K^T / sqrt(d) + mask) V
exactly (up to rounding), never holding an (N, N) matrix.

HBM traffic, counted in elements read plus written, as in the paper's Theorem 2:
    standard attention (Algorithm 0)   4 N d + 4 N^2             = Θ(N d + N^2)
    FlashAttention (Algorithm 1)       3 N d + 2 N + Tc (3 N d + 4 N) = Θ(N^2 d^2 / M) with Bc = ceil(M / 4d)
(with no mask; a causal mask skips about half the tiles). The FlashAttention-2 order reads Q_i once and
K_j, V_j once per query block: 2 N d + N + 2 N d Tr, which is Θ(N^2 d^2 / M) only when Br grows with M / d.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from playground.errors import check_int

ORDERS = ("fa1", "fa2")


# ---------------------------------------------------------------------------------------------
# The schedule: which tiles, in which order, and what moves between HBM and the chip
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Transfer:
    """A block of one tensor moved between HBM and the chip: ``Q`` block 2, 64 elements."""
    tensor: str                 # Q, K, V, O, l, m (fa1) or L (fa2: the logsumexp m + log l)
    block: int                  # query block for Q, O, l, m, L; key block for K, V
    elements: int


@dataclass
class Step:
    """One (query block i, key block j) tile of the schedule, and, after ``replay``, its numbers.

    ``scores`` S_ij (Br, Bc), scaled by 1/sqrt(d), -inf where the causal mask hides a key;
    ``probs`` e^(S_ij - m') (Br, Bc); ``m``, ``l`` (Br,) and ``o`` (Br, d) are the running row max,
    row sum and output of block i after this step, as the algorithm holds them: unnormalised in
    the fa2 order (divided by l once at the end), normalised in the fa1 order (Algorithm 1 line 12).
    A tile the causal mask hides completely is ``skipped``: no numbers, no traffic.
    """
    index: int
    i: int
    j: int
    rows: tuple[int, int]       # query positions [start, stop)
    cols: tuple[int, int]       # key positions [start, stop)
    skipped: bool
    reads: list[Transfer] = field(default_factory=list)
    writes: list[Transfer] = field(default_factory=list)
    placement: dict[str, str] = field(default_factory=dict)   # tile name -> level (flash_memory.LEVELS)
    scores: np.ndarray | None = None
    probs: np.ndarray | None = None
    m: np.ndarray | None = None
    l: np.ndarray | None = None
    o: np.ndarray | None = None
    o_normalised: bool = False

    @property
    def elements_read(self) -> int:
        return sum(t.elements for t in self.reads)

    @property
    def elements_written(self) -> int:
        return sum(t.elements for t in self.writes)

    @property
    def output(self) -> np.ndarray | None:
        """(Br, d) block i's output as far as the keys seen so far: O / l, or O when already normalised."""
        if self.o is None:
            return None
        return self.o if self.o_normalised else self.o / self.l[:, None]

    def on_chip(self, d: int) -> dict[str, int]:
        """Elements each on-chip level holds at this step (registers, SRAM)."""
        br, bc = self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]
        sizes = {"Q_i": br * d, "K_j": bc * d, "V_j": bc * d, "O_i": br * d,
                 "S_ij": br * bc, "P_ij": br * bc, "m_i": br, "l_i": br}
        out = {"registers": 0, "SRAM": 0}
        for name, level in self.placement.items():
            if level in out:
                out[level] += sizes[name]
        return out


# Where each tile lives. Off chip, whole tensors stay in HBM. On chip, Algorithm 1 keeps the blocks
# it loads (Q_i, K_j, V_j, O_i, l_i, m_i) in SRAM; the FlashAttention-2 kernels keep Q_i, K_j, V_j
# in shared memory and the per-row state (S_ij, P_ij, m_i, l_i and the O_i accumulator) in the
# registers of the warps that own those rows. S_ij and P_ij are matmul accumulators in both.
_HBM = {"Q": "HBM", "K": "HBM", "V": "HBM", "O": "HBM"}
PLACEMENT = {
    "fa1": {**_HBM, "l": "HBM", "m": "HBM", "Q_i": "SRAM", "K_j": "SRAM", "V_j": "SRAM", "O_i": "SRAM",
            "l_i": "SRAM", "m_i": "SRAM", "S_ij": "registers", "P_ij": "registers"},
    "fa2": {**_HBM, "L": "HBM", "Q_i": "SRAM", "K_j": "SRAM", "V_j": "SRAM", "O_i": "registers",
            "l_i": "registers", "m_i": "registers", "S_ij": "registers", "P_ij": "registers"},
}


def _check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    return order


def _hidden(rows: tuple[int, int], cols: tuple[int, int], causal: bool) -> bool:
    """True when the causal mask hides every key of the tile from every query: first key > last query."""
    return causal and cols[0] > rows[1] - 1


def schedule(n: int, head_dim: int, *, block_rows: int, block_cols: int, causal: bool,
             order: str = "fa2") -> tuple[list[Transfer], list[Step]]:
    """(setup writes, steps): the tiles in kernel order and the HBM traffic of each, without numbers.

    fa2 (FlashAttention-2, Algorithm 1): for i in 1..Tr: load Q_i; for j in 1..Tc: load K_j, V_j,
    update m, l, O on chip; after the last j write O_i and L_i = m + log l. Under a causal mask
    the inner loop stops at the diagonal; the tiles past it are listed as skipped.
    fa1 (FlashAttention, Algorithm 1): write O = 0, l = 0, m = -inf to HBM; for j in 1..Tc: load
    K_j, V_j; for i in 1..Tr: load Q_i, O_i, l_i, m_i, update, write O_i, l_i, m_i back.
    """
    n = check_int("n", n, 1)
    d = check_int("head_dim", head_dim, 1)
    br = check_int("block_rows", block_rows, 1)
    bc = check_int("block_cols", block_cols, 1)
    _check_order(order)
    tr, tc = -(-n // br), -(-n // bc)
    rows = [(i * br, min(n, (i + 1) * br)) for i in range(tr)]
    cols = [(j * bc, min(n, (j + 1) * bc)) for j in range(tc)]
    size_r = [b - a for a, b in rows]
    size_c = [b - a for a, b in cols]
    placement = PLACEMENT[order]
    steps: list[Step] = []
    setup: list[Transfer] = []

    def step(i, j):
        s = Step(len(steps), i, j, rows[i], cols[j], _hidden(rows[i], cols[j], causal))
        s.placement = dict(placement) if not s.skipped else {k: v for k, v in placement.items() if v == "HBM"}
        steps.append(s)
        return s

    if order == "fa2":
        for i in range(tr):
            live = [j for j in range(tc) if not _hidden(rows[i], cols[j], causal)]
            for j in range(tc):
                s = step(i, j)
                if s.skipped:
                    continue
                if j == live[0]:
                    s.reads.append(Transfer("Q", i, size_r[i] * d))
                s.reads += [Transfer("K", j, size_c[j] * d), Transfer("V", j, size_c[j] * d)]
                if j == live[-1]:
                    s.writes += [Transfer("O", i, size_r[i] * d), Transfer("L", i, size_r[i])]
    else:
        setup = [Transfer("O", i, size_r[i] * d) for i in range(tr)]
        setup += [Transfer(t, i, size_r[i]) for t in ("l", "m") for i in range(tr)]
        for j in range(tc):
            live = [i for i in range(tr) if not _hidden(rows[i], cols[j], causal)]
            for i in range(tr):
                s = step(i, j)
                if s.skipped:
                    continue
                if i == live[0]:
                    s.reads += [Transfer("K", j, size_c[j] * d), Transfer("V", j, size_c[j] * d)]
                s.reads += [Transfer("Q", i, size_r[i] * d), Transfer("O", i, size_r[i] * d),
                            Transfer("l", i, size_r[i]), Transfer("m", i, size_r[i])]
                s.writes += [Transfer("O", i, size_r[i] * d), Transfer("l", i, size_r[i]),
                             Transfer("m", i, size_r[i])]
    return setup, steps


# ---------------------------------------------------------------------------------------------
# The replay
# ---------------------------------------------------------------------------------------------

@dataclass
class Replay:
    """A replayed forward pass of one head: its steps, the output, and the standard output beside it."""
    order: str
    causal: bool
    block_rows: int
    block_cols: int
    setup: list[Transfer]       # HBM writes before the first tile (fa1: O = 0, l = 0, m = -inf)
    steps: list[Step]
    output: np.ndarray          # (N, d) FlashAttention's O
    reference: np.ndarray       # (N, d) softmax(Q K^T / sqrt(d) + mask) V
    logsumexp: np.ndarray       # (N,) m + log l, the statistic FlashAttention-2 keeps for the backward pass

    @property
    def max_abs_diff(self) -> float:
        return float(np.max(np.abs(self.output - self.reference)))

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.steps)

    @property
    def hbm_elements(self) -> int:
        """Elements read plus written, setup included."""
        return sum(t.elements for t in self.setup) + sum(s.elements_read + s.elements_written for s in self.steps)


def _as_matrix(name: str, x) -> np.ndarray:
    a = torch.as_tensor(x).detach().cpu().to(torch.float64).numpy()
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (N, d) matrix for one head, got shape {tuple(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def causal_mask(n: int) -> np.ndarray:
    """(N, N) True where query r may see key c: c <= r."""
    return np.tril(np.ones((n, n), dtype=bool))


def standard_attention(q, k, v, *, causal: bool) -> np.ndarray:
    """(N, d) softmax(Q K^T / sqrt(d) + mask) V, the (N, N) matrix held whole (Algorithm 0)."""
    q, k, v = (_as_matrix(n, x) for n, x in (("q", q), ("k", k), ("v", v)))
    s = q @ k.T / math.sqrt(q.shape[1])                         # (N, N)
    if causal:
        s = np.where(causal_mask(len(q)), s, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ v              # (N, d)


def _exp_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """e^(x - shift) with e^(-inf - (-inf)) = 0: a row that has seen no key yet contributes nothing."""
    safe = np.where(np.isfinite(shift), shift, 0.0)
    return np.exp(x - safe)


def replay(q, k, v, *, block_rows: int, block_cols: int, causal: bool, order: str = "fa2") -> Replay:
    """FlashAttention's forward pass over one head, one step per (query block, key block) tile.

    Args:
        q, k, v: (N, d) one head's queries, keys and values (numpy or torch; computed in float64).
        block_rows: Br, query rows per block. block_cols: Bc, keys per block (see ``flash_memory.block_sizes``).
        causal: mask keys after the query; tiles entirely above the diagonal are skipped.
        order: "fa2" (query blocks outside, FlashAttention-2) or "fa1" (key blocks outside, Algorithm 1).
    Returns:
        a ``Replay``: the steps with their tiles, running m, l, O and HBM transfers, the (N, d)
        output and the standard-attention reference.
    """
    q, k, v = (_as_matrix(n, x) for n, x in (("q", q), ("k", k), ("v", v)))
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"q, k and v must share one (N, d) shape, got {q.shape}, {k.shape}, {v.shape}")
    n, d = q.shape
    setup, steps = schedule(n, d, block_rows=block_rows, block_cols=block_cols, causal=causal, order=order)
    scale = 1.0 / math.sqrt(d)
    # the running state of every query row: in HBM for fa1, on chip (one block at a time) for fa2
    m = np.full(n, -np.inf)                                      # (N,)
    l = np.zeros(n)                                              # (N,)
    o = np.zeros((n, d))                                         # (N, d)
    for s in steps:
        if s.skipped:
            continue
        (r0, r1), (c0, c1) = s.rows, s.cols
        scores = q[r0:r1] @ k[c0:c1].T * scale                   # (Br, Bc)
        if causal:
            scores = np.where(np.arange(c0, c1)[None, :] <= np.arange(r0, r1)[:, None], scores, -np.inf)
        m_old, l_old, o_old = m[r0:r1], l[r0:r1], o[r0:r1]
        if order == "fa2":
            # FlashAttention-2, Algorithm 1 lines 8-10: one max, O kept unnormalised
            m_new = np.maximum(m_old, scores.max(axis=1))        # (Br,)
            probs = _exp_shift(scores, m_new[:, None])           # (Br, Bc)
            alpha = _exp_shift(m_old, m_new)                     # (Br,) e^(m - m')
            l_new = alpha * l_old + probs.sum(axis=1)
            o_new = alpha[:, None] * o_old + probs @ v[c0:c1]   # (Br, d)
        else:
            # FlashAttention, Algorithm 1 lines 10-12: the tile's own max, O normalised in HBM
            m_tile = scores.max(axis=1)                          # (Br,) m~_ij
            p_tile = _exp_shift(scores, m_tile[:, None])         # (Br, Bc) P~_ij
            m_new = np.maximum(m_old, m_tile)
            a_old, a_tile = _exp_shift(m_old, m_new), _exp_shift(m_tile, m_new)
            l_new = a_old * l_old + a_tile * p_tile.sum(axis=1)
            o_new = ((l_old * a_old)[:, None] * o_old + a_tile[:, None] * (p_tile @ v[c0:c1])) / l_new[:, None]
            probs = a_tile[:, None] * p_tile                     # e^(S - m'), as in the fa2 rule
        m[r0:r1], l[r0:r1], o[r0:r1] = m_new, l_new, o_new
        s.scores, s.probs = scores, probs
        s.m, s.l, s.o, s.o_normalised = m_new.copy(), l_new.copy(), o_new.copy(), order == "fa1"
    output = o / l[:, None] if order == "fa2" else o
    return Replay(order, causal, block_rows, block_cols, setup, steps, output,
                  standard_attention(q, k, v, causal=causal), m + np.log(l))
