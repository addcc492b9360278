"""One configuration dataclass for every model in the playground.

A config is plain data (strings, numbers, booleans), round-trips through JSON, and is
validated on construction: an impossible combination raises ``ValueError`` naming the
field and what would be valid, before any tensor is allocated.

Attention variants are one integer, ``n_kv_heads``::

    MHA  n_kv_heads == n_heads      q: h0 h1 h2 h3 h4 h5 h6 h7
                                    kv: 0  1  2  3  4  5  6  7
    GQA  1 < n_kv_heads < n_heads   q: h0 h1 h2 h3 h4 h5 h6 h7
                                    kv: 0  0  1  1  2  2  3  3   (n_kv_heads = 4)
    MQA  n_kv_heads == 1            q: h0 h1 h2 h3 h4 h5 h6 h7
                                    kv: 0  0  0  0  0  0  0  0

and MLA (DeepSeek-V2's multi-head latent attention, ``nn.mla``) is ``kv_lora_rank > 0``: every head's keys and
values are rebuilt from one latent of kv_lora_rank numbers per token, which is all the cache keeps, beside one
RoPE key of qk_rope_dim numbers shared by the heads (each head's query and key: head_dim - qk_rope_dim numbers
without position, qk_rope_dim with RoPE).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

# The tables every layer reads (config validation, the zoo, the spec, benchmarks, the page's controls).
FAMILIES = ("decoder", "prefix", "encdec", "rwkv", "mamba")
TRANSFORMER_FAMILIES = ("decoder", "prefix", "encdec")
RECURRENT_FAMILIES = ("rwkv", "mamba")  # no K/V heads and no position encoding: the state carries order
VARIANTS = ("MHA", "GQA", "MQA", "MLA")  # read off n_kv_heads and kv_lora_rank (ModelConfig.variant)
POSITIONS = ("rope", "alibi", "sinusoidal", "learned", "none")
NORMS = ("layernorm", "rmsnorm")
NORM_PLACEMENTS = ("pre", "post")
MLPS = ("gelu", "gelu_tanh", "swiglu")  # gelu_tanh: GPT-2's gelu_new, the tanh approximation
ATTN_BIASES = ("auto", "none", "qkv", "qkvo")  # which attention projections carry a bias (auto: as `bias`)
ROPE_SCALINGS = ("linear", "llama3")  # rope_scaling["rope_type"]; None: plain RoPE
BACKENDS = ("auto", "flash", "efficient", "cudnn", "math", "flex", "explicit")
DTYPES = ("auto", "float32", "bfloat16", "float16")  # what a model runs in (auto: bf16 or fp16 on CUDA, fp32 on CPU)


@dataclass
class ModelConfig:
    # --- what kind of model
    family: str = "decoder"        # decoder (GPT/LLaMA) | prefix (GLM) | encdec (Vaswani 2017) | rwkv | mamba
    # --- sizes
    vocab_size: int = 2048
    context_length: int = 128      # training length; learned positions cannot go past it
    n_layer: int = 4               # layers per stack (an encoder-decoder has n_layer in each)
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 4            # == n_heads: MHA, 1: MQA, in between: GQA
    kv_lora_rank: int = 0          # > 0: MLA, the latent's width (keys and values of every head come from it)
    qk_rope_dim: int = 0           # MLA: the shared RoPE key's width (even, below head_dim)
    d_ff: int = 512                # hidden width of the MLP
    # --- components, chosen by name
    position: str = "rope"         # sinusoidal | learned | rope | alibi | none
    rope_base: float = 10000.0     # RoPE theta (Hugging Face rope_theta: Llama 1e4 / 5e5, Qwen2 1e6)
    rope_scaling: dict | None = None  # None | {"rope_type": "linear", "factor"} | {"rope_type": "llama3", "factor",
                                   #   "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}
    norm: str = "layernorm"        # layernorm | rmsnorm
    norm_placement: str = "pre"    # pre (GPT-2, LLaMA) | post (Vaswani 2017)
    norm_eps: float = 1e-5
    mlp: str = "gelu"              # gelu | gelu_tanh (GPT-2) | swiglu
    bias: bool = True              # biases in linear layers and LayerNorm
    attn_bias: str = "auto"        # attention projections with a bias: auto (as bias) | none | qkv (Qwen2) | qkvo
    tie_embeddings: bool = True    # share token embedding and output projection
    sliding_window: int = 0        # 0: off; else each query sees at most this many keys back
    dropout: float = 0.0
    # --- recurrent families (RWKV: n_heads heads of size d_model / n_heads; Mamba-1 below)
    d_state: int = 16              # Mamba: SSM state size per channel
    d_conv: int = 4                # Mamba: causal depthwise convolution width
    expand: int = 2                # Mamba: d_inner = expand * d_model
    dt_rank: int = 0               # Mamba: rank of the step-size projection (0: ceil(d_model / 16), Mamba's "auto")
    # --- how attention is computed
    backend: str = "auto"          # auto | flash | efficient | cudnn | math (SDPA kernels) | flex | explicit

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def attn_has_bias(self, projection: str) -> bool:
        """Whether attention projection ``projection`` (q, k, v or o) carries a bias."""
        if self.attn_bias == "auto":
            return self.bias
        return self.attn_bias != "none" and projection in self.attn_bias

    @property
    def attention_calls(self) -> int:
        """Attention calls (or recurrent mixers) in one forward: an encoder-decoder has three per layer."""
        return self.n_layer * (3 if self.family == "encdec" else 1)

    @property
    def variant(self) -> str:
        """'MLA' (kv_lora_rank > 0), else 'MHA', 'GQA' or 'MQA', read off n_kv_heads."""
        if self.kv_lora_rank:
            return "MLA"
        if self.n_kv_heads == self.n_heads:
            return "MHA"
        return "MQA" if self.n_kv_heads == 1 else "GQA"

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        _choice("family", self.family, FAMILIES)
        for name in ("vocab_size", "context_length", "n_layer", "d_model", "n_heads", "n_kv_heads", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        _choice("position", self.position, POSITIONS)
        if not isinstance(self.dt_rank, int) or isinstance(self.dt_rank, bool) or self.dt_rank < 0:
            raise ValueError(f"dt_rank must be 0 (ceil(d_model / 16)) or a positive integer, got {self.dt_rank!r}")
        if self.family not in TRANSFORMER_FAMILIES:
            for name in ("d_state", "d_conv", "expand"):
                value = getattr(self, name)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if self.position != "none":
                raise ValueError(f"position={self.position!r} does not apply to family={self.family!r}: "
                                 "its recurrence carries order itself; use position='none'")
            if self.n_kv_heads != self.n_heads:
                raise ValueError(f"n_kv_heads applies to attention only; family={self.family!r} needs "
                                 f"n_kv_heads == n_heads ({self.n_heads})")
        _choice("norm", self.norm, NORMS)
        _choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        _choice("mlp", self.mlp, MLPS)
        _choice("attn_bias", self.attn_bias, ATTN_BIASES)
        _check_rope_scaling(self.rope_scaling)
        _choice("backend", self.backend, BACKENDS)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}; "
                f"valid n_heads divide {self.d_model}: {_divisors(self.d_model)}"
            )
        if self.n_kv_heads > self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must be divisible by n_kv_heads={self.n_kv_heads}; "
                f"valid n_kv_heads: {_divisors(self.n_heads)} (n_heads: MHA, 1: MQA, between: GQA)"
            )
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(
                f"position='rope' needs an even head dim, got d_model/n_heads = {self.head_dim}; "
                "change d_model or n_heads"
            )
        self._validate_mla()
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"position='sinusoidal' needs an even d_model, got {self.d_model}")
        if not isinstance(self.sliding_window, int) or self.sliding_window < 0:
            raise ValueError(f"sliding_window must be 0 (off) or a positive integer, got {self.sliding_window!r}")
        if self.sliding_window > self.context_length:
            raise ValueError(
                f"sliding_window={self.sliding_window} is larger than context_length={self.context_length}; "
                f"use 0 (off) or a value in 1..{self.context_length}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.rope_base <= 1.0:
            raise ValueError(f"rope_base must be > 1, got {self.rope_base}")
        if self.norm_eps <= 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps}")

    def _validate_mla(self) -> None:
        for name in ("kv_lora_rank", "qk_rope_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be 0 or a positive integer, got {value!r}")
        if not self.kv_lora_rank:
            if self.qk_rope_dim:
                raise ValueError("qk_rope_dim applies to MLA only: set kv_lora_rank > 0 too, or qk_rope_dim=0")
            return
        if self.family not in ("decoder", "prefix"):
            raise ValueError(f"MLA (kv_lora_rank > 0) is built for decoder-only and prefix models, not "
                             f"family={self.family!r}")
        if self.position != "rope":
            raise ValueError(f"MLA rotates a decoupled RoPE key (DeepSeek-V2): it needs position='rope', "
                             f"got {self.position!r}")
        if self.n_kv_heads != self.n_heads:
            raise ValueError(f"MLA rebuilds every head's keys and values from its latent: n_kv_heads must equal "
                             f"n_heads ({self.n_heads}), got {self.n_kv_heads}")
        if self.qk_rope_dim < 2 or self.qk_rope_dim % 2 or self.qk_rope_dim >= self.head_dim:
            raise ValueError(f"MLA's qk_rope_dim must be even, at least 2 and below head_dim={self.head_dim}, "
                             f"got {self.qk_rope_dim}")
        if self.rope_scaling is not None:
            raise ValueError("MLA's decoupled RoPE key takes plain RoPE: set rope_scaling to None")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read model config {path}: {e}") from e
        return cls.from_dict(data)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def variant_kv_heads(variant: str, n_heads: int) -> int:
    """The K/V heads a variant gives ``n_heads`` query heads: MHA all, GQA half (at least 1), MQA one; MLA all
    (each head's keys and values rebuilt from the latent, ``variant_fields``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    return {"MHA": n_heads, "GQA": max(1, n_heads // 2), "MQA": 1, "MLA": n_heads}[variant]


def variant_fields(variant: str, n_heads: int, head_dim: int) -> dict:
    """The config fields a variant sets for ``n_heads`` heads of ``head_dim``: n_kv_heads, and for MLA a latent
    twice a head wide and a RoPE key half a head wide (DeepSeek-V2's proportions are 4 and 1/2 at 128 heads; a
    4-head model's latent is kept below GQA's cache so the ranking the lab shows is the one that matters)."""
    fields = {"n_kv_heads": variant_kv_heads(variant, n_heads), "kv_lora_rank": 0, "qk_rope_dim": 0}
    if variant == "MLA":
        fields.update(kv_lora_rank=2 * head_dim, qk_rope_dim=head_dim // 2)
    return fields


def _choice(field: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{field}={value!r} is not valid; choose one of: {', '.join(valid)}")


ROPE_SCALING_FIELDS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


def _check_rope_scaling(scaling: object) -> None:
    """None, or a dict naming a rope_type of ROPE_SCALINGS with exactly that type's positive numbers."""
    if scaling is None:
        return
    if not isinstance(scaling, dict):
        raise ValueError(f"rope_scaling must be None or a JSON object, got {scaling!r}")
    kind = scaling.get("rope_type")
    if kind not in ROPE_SCALING_FIELDS:
        raise ValueError(f"rope_scaling rope_type={kind!r} is not supported; choose one of: {', '.join(ROPE_SCALINGS)}")
    need = {"rope_type", *ROPE_SCALING_FIELDS[kind]}
    if set(scaling) != need:
        raise ValueError(f"rope_scaling of type {kind!r} takes exactly the fields {sorted(need)}, got {sorted(scaling)}")
    for name in ROPE_SCALING_FIELDS[kind]:
        value = scaling[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"rope_scaling {name} must be a positive number, got {value!r}")
    if kind == "llama3" and not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
        raise ValueError(f"rope_scaling high_freq_factor ({scaling['high_freq_factor']}) must be larger than "
                         f"low_freq_factor ({scaling['low_freq_factor']})")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# Presets: plain dicts, turned into configs by from_name.
PRESETS: dict[str, dict] = {
    # a GPT-2-like small decoder: learned positions, LayerNorm, GELU, MHA
    "gpt2-tiny": dict(family="decoder", position="learned", norm="layernorm", mlp="gelu", bias=True),
    # a LLaMA-like small decoder: RoPE, RMSNorm, SwiGLU, GQA, no biases
    "llama-tiny": dict(family="decoder", position="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                       n_kv_heads=2, tie_embeddings=False, norm_eps=1e-6),
    # a GLM-like prefix decoder
    "glm-tiny": dict(family="prefix", position="rope", norm="layernorm", mlp="gelu"),
    # the 2017 Transformer, small: sinusoidal positions, post-norm (GELU where the paper used ReLU)
    "vaswani-tiny": dict(family="encdec", position="sinusoidal", norm="layernorm", norm_placement="post",
                         mlp="gelu", n_layer=2),
}


def from_name(name: str, **overrides) -> ModelConfig:
    """A preset config by name, with any field overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
