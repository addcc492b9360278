"""Position encodings as pure, typed functions: easy to plot, easy to test.

- sinusoidal (Vaswani et al. 2017): a fixed table added to the token embeddings.
- learned absolute (GPT-2): an embedding table; lives in the model as ``nn.Embedding``.
- RoPE (Su et al. 2021): rotate each (i, i + hs/2) pair of q and k by ``pos * theta_i``, so
  ``q_m . k_n`` depends only on ``m - n``. The GPT-NeoX / LLaMA "rotate half" layout.
- ALiBi (Press et al. 2022): no embedding; add ``-slope_h * |i - j|`` to the attention scores.
- none (NoPE): nothing; a causal mask alone still leaks position.

Glossary: T positions, d model width, hs head dim, nh heads.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_table(pos: Tensor, d_model: int) -> Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)).

    Args:
        pos: (T,) integer positions. Returns: (T, d_model) float32.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, device=pos.device) / d_model)
    angles = pos.float()[:, None] * freqs[None, :]  # (T, d/2)
    table = torch.empty(len(pos), d_model, device=pos.device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


def rope_frequencies(head_dim: int, base: float = 10000.0, scaling: dict | None = None) -> Tensor:
    """theta_i = base^(-2i/hs) for i in 0..hs/2-1, optionally rescaled for a longer context. (hs/2,)

    ``scaling`` is a config's ``rope_scaling``:
    - ``linear`` (position interpolation): every theta_i / factor, i.e. positions / factor.
    - ``llama3`` (Llama 3.1): wavelengths 2 pi / theta_i longer than original / low_freq_factor are
      divided by ``factor``, those shorter than original / high_freq_factor are kept, and the band
      between is blended: (1 - s) theta_i / factor + s theta_i with
      s = (original / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor).
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
    freqs = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
    if scaling is None:
        return freqs
    kind, factor = scaling["rope_type"], scaling["factor"]
    if kind == "linear":
        return freqs / factor
    if kind != "llama3":
        raise ValueError(f"rope_scaling rope_type={kind!r} is not supported; valid: linear, llama3")
    original = scaling["original_max_position_embeddings"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    wavelength = 2 * math.pi / freqs  # (hs/2,)
    scaled = torch.where(wavelength > original / low, freqs / factor, freqs)
    smooth = (original / wavelength - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelength >= original / high) & (wavelength <= original / low)
    return torch.where(medium, blended, scaled)


def rope_angles(pos: Tensor, head_dim: int, base: float = 10000.0,
                scaling: dict | None = None) -> tuple[Tensor, Tensor]:
    """cos and sin of pos * theta (``rope_frequencies``), laid out for ``apply_rope``. Each (T, hs)."""
    freqs = rope_frequencies(head_dim, base, scaling).to(pos.device)
    angles = pos.float()[:, None] * freqs[None, :]  # (T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hs)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate q or k by their absolute positions.

    Args:
        x: (B, nh, T, hs). cos, sin: (T, hs) from ``rope_angles`` at the same positions.
    Returns:
        (B, nh, T, hs), same dtype as x.
    """
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # rotate_half
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def alibi_slopes(n_heads: int) -> Tensor:
    """The ALiBi paper's head slopes: a geometric sequence starting at 2^(-8/n).

    For a head count that is not a power of two, the paper takes the slopes of the closest
    smaller power of two, then every other slope of the next power of two.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        slopes = power_of_two(n_heads)
    else:
        closest = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_two(closest) + alibi_slopes(2 * closest).tolist()[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: Tensor, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """-slope_h * |q - k|, added to the scores. (nh, Tq, Tk)

    Under a causal mask this is the paper's ``-m * (i - j)``; the absolute value makes it
    symmetric where attention is bidirectional (an encoder, a GLM prefix).
    """
    distance = (q_pos[:, None] - k_pos[None, :]).abs().float()  # (Tq, Tk)
    return -slopes.to(q_pos.device)[:, None, None] * distance[None]
