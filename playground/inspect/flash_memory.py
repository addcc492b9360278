"""GPU memory hierarchies and FlashAttention's HBM traffic: the GPUs the replay runs on (registers, SRAM and HBM
per SM, from NVIDIA's whitepapers), the block sizes an on-chip budget allows (Algorithm 1, line 1), and the
elements standard and tiled attention move through HBM as N grows, with Theorem 2's bounds beside them
(Dao et al. 2022). The tile-by-tile replay itself is ``flash_replay``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from playground.errors import check_int
from playground.inspect.flash_replay import schedule

LEVELS = ("registers", "SRAM", "HBM")  # fastest and smallest first


# ---------------------------------------------------------------------------------------------
# GPUs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GPU:
    """One GPU's memory hierarchy, per SM where it is on chip."""
    name: str
    sm_count: int               # streaming multiprocessors
    smem_per_sm_kb: int         # largest shared memory one SM can give a kernel (KB)
    l1_smem_per_sm_kb: int      # the combined L1 cache / shared memory array per SM (KB)
    registers_per_sm: int       # 32-bit registers per SM
    sram_tb_s: float            # shared memory bandwidth, all SMs together (TB/s)
    hbm_gb: int                 # global memory (GB)
    hbm_tb_s: float             # global memory bandwidth (TB/s)

    @property
    def register_kb_per_sm(self) -> int:
        return self.registers_per_sm * 4 // 1024

    def budget(self, bytes_per_element: int = 2) -> int:
        """M: elements of one SM's shared memory (fp16/bf16 by default)."""
        check_int("bytes_per_element", bytes_per_element, 1)
        return self.smem_per_sm_kb * 1024 // bytes_per_element

    def hierarchy(self) -> list[dict]:
        """The three levels the replay places tiles in, fastest first, with sizes and bandwidths.

        ``size_bytes`` is per SM on chip and for the whole device for HBM; ``total_bytes`` is the
        device total. Register bandwidth is not published, so it is None.
        """
        kb, gb = 1024, 10 ** 9
        return [
            {"level": "registers", "per": "SM", "size_bytes": self.register_kb_per_sm * kb,
             "total_bytes": self.register_kb_per_sm * kb * self.sm_count, "bandwidth_tb_s": None},
            {"level": "SRAM", "per": "SM", "size_bytes": self.smem_per_sm_kb * kb,
             "total_bytes": self.smem_per_sm_kb * kb * self.sm_count, "bandwidth_tb_s": self.sram_tb_s},
            {"level": "HBM", "per": "device", "size_bytes": self.hbm_gb * gb,
             "total_bytes": self.hbm_gb * gb, "bandwidth_tb_s": self.hbm_tb_s},
        ]


# Sources: NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020): 108 SMs, 192 KB combined
# L1/shared per SM of which up to 164 KB is shared memory, 64K 32-bit registers per SM, 40 GB HBM2
# at 1,555 GB/s, 80 GB HBM2e at 2,039 GB/s (A100 80GB datasheet). NVIDIA H100 Tensor Core GPU
# Architecture whitepaper (2022): H100 SXM5 has 132 SMs, 256 KB combined L1/shared per SM of which
# up to 228 KB is shared memory, 64K registers per SM, 80 GB HBM3 at 3.35 TB/s. SRAM bandwidth:
# FlashAttention (Dao et al. 2022, Figure 1) gives 19 TB/s for the A100; FlashAttention-3 (Shah et
# al. 2024) uses about 33 TB/s for the H100 SXM5 (NVIDIA publishes no shared-memory bandwidth).
GPUS: dict[str, GPU] = {g.name: g for g in (
    GPU("A100 40GB", 108, 164, 192, 65536, 19.0, 40, 1.555),
    GPU("A100 80GB", 108, 164, 192, 65536, 19.0, 80, 2.039),
    GPU("H100 SXM", 132, 228, 256, 65536, 33.0, 80, 3.35),
)}


def gpu(name: str) -> GPU:
    """The GPU named ``name`` (a key of ``GPUS``)."""
    if name not in GPUS:
        raise ValueError(f"Unknown GPU {name!r}; known: {', '.join(GPUS)}")
    return GPUS[name]


def block_sizes(budget: int, head_dim: int) -> tuple[int, int]:
    """(Br, Bc) from an on-chip budget of M elements, Algorithm 1 line 1: Bc = ceil(M / 4d), Br = min(Bc, d).

    Four blocks of d columns (Q_i, K_j, V_j, O_i) share the budget, so M must hold at least
    one row of each: M >= 4 d.
    """
    d = check_int("head_dim", head_dim, 1)
    m = check_int("budget", budget, 4 * d)
    bc = -(-m // (4 * d))
    return min(bc, d), bc


# ---------------------------------------------------------------------------------------------
# HBM traffic over N
# ---------------------------------------------------------------------------------------------

def standard_passes(n: int, head_dim: int) -> list[dict]:
    """Algorithm 0's three passes over HBM, each with the elements it reads and writes.

    1. read Q, K; write S = Q K^T. 2. read S; write P = softmax(S) (the mask is applied here).
    3. read P, V; write O = P V. The (N, N) matrices S and P go through HBM: Θ(N d + N^2).
    """
    n, d = check_int("n", n, 1), check_int("head_dim", head_dim, 1)
    return [
        {"pass": "S = Q K^T", "reads": {"Q": n * d, "K": n * d}, "writes": {"S": n * n}},
        {"pass": "P = softmax(S)", "reads": {"S": n * n}, "writes": {"P": n * n}},
        {"pass": "O = P V", "reads": {"P": n * n, "V": n * d}, "writes": {"O": n * d}},
    ]


def standard_traffic(n: int, head_dim: int) -> int:
    """Elements standard attention reads plus writes in HBM: 4 N d + 4 N^2."""
    return sum(sum(p["reads"].values()) + sum(p["writes"].values()) for p in standard_passes(n, head_dim))


def tiled_traffic(n: int, head_dim: int, *, block_rows: int, block_cols: int, causal: bool,
                  order: str = "fa2") -> int:
    """Elements FlashAttention reads plus writes in HBM, summed over its schedule."""
    setup, steps = schedule(n, head_dim, block_rows=block_rows, block_cols=block_cols, causal=causal, order=order)
    return sum(t.elements for t in setup) + sum(s.elements_read + s.elements_written for s in steps)


def traffic_over_n(ns, head_dim: int, budget: int, *, causal: bool = False, order: str = "fa1") -> dict:
    """HBM traffic of standard and tiled attention for each N, with Theorem 2's bounds beside them.

    Block sizes come from the budget M (``block_sizes``). Returns numpy arrays keyed
    ``n``, ``standard`` (counted), ``standard_bound`` (N d + N^2), ``tiled`` (counted),
    ``tiled_bound`` (N^2 d^2 / M), and the ``block_rows``, ``block_cols`` used. The bound is
    Algorithm 1's (order "fa1"); the fa2 order with Br = min(Bc, d) reads K, V N / Br times.
    """
    ns = [check_int("n", x, 1) for x in ns]
    if not ns:
        raise ValueError("ns must name at least one sequence length")
    br, bc = block_sizes(budget, head_dim)
    d = head_dim
    return {
        "n": np.array(ns),
        "standard": np.array([standard_traffic(x, d) for x in ns]),
        "standard_bound": np.array([x * d + x * x for x in ns], dtype=float),
        "tiled": np.array([tiled_traffic(x, d, block_rows=br, block_cols=bc, causal=causal, order=order)
                           for x in ns]),
        "tiled_bound": np.array([x * x * d * d / budget for x in ns], dtype=float),
        "block_rows": br, "block_cols": bc,
    }
