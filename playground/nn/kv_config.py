"""What a real model caches, layer by layer, read from its Hugging Face ``config.json``.

A generic formula says every one of the L layers caches K and V for every position:
2 * L * n_kv * hd elements per token. Real configs say otherwise, layer by layer:

    kind       grows per token (elements)    stops growing at      holds whatever the length
    attention  2 * n_kv * hd                 never                 nothing
    sliding    2 * n_kv * hd                 the window W          nothing
    mla        kv_lora_rank + qk_rope_dim    never                 nothing   (DeepSeek-V2/V3)
    recurrent  nothing                       -                     its state (Mamba-1, Mamba-2, RWKV)
    none       nothing                       -                     nothing   (a hybrid's MLP / MoE blocks)

Recurrent states, per layer (d_in = expand * hidden_size; the conv state in the cache's dtype, the
rest in float32 at least, as the reference implementations hold it, see ``cache.state_dtype``):

    Mamba-1  conv d_in (d_conv - 1)                 + SSM d_in * d_state
    Mamba-2  conv (d_in + 2 g d_state)(d_conv - 1)  + SSM H * p * d_state        (H heads of p, g groups)
    RWKV-4   token shift 2 d                        + 3 d (numerator, denominator, max)
    RWKV-5/6 token shift 2 d                        + H matrices N x N = d_att * N

Which layer is which: ``layer_types`` (Gemma-2/3, Qwen2, GPT-OSS, hybrids), ``sliding_window_pattern``
(every n-th layer global), Qwen2's ``use_sliding_window`` + ``max_window_layers`` (layers from that
index on slide), Mistral's ``sliding_window`` (every layer), Jamba's ``attn_layer_period`` /
``attn_layer_offset``, Bamba's ``attn_layer_indices``, Nemotron-H's ``hybrid_override_pattern``
(M Mamba-2, * attention, - MLP, E MoE). A multimodal config's ``text_config`` is read for its text model.
"""
from __future__ import annotations

from dataclasses import dataclass

from playground.errors import InputError, check_int
from playground.nn.cache import DTYPE_BYTES

MAX_LAYERS = 1000        # past this a config is not a real model
MAX_WIDTH = 1 << 20      # hidden sizes, ranks, windows: far above any published model

# Gemma-2, GPT-OSS: every 2nd layer global; Gemma-3: every 6th; Command-R7B: every 4th (when the config
# names no pattern, as transformers' defaults for these model types say)
DEFAULT_PATTERN = {"gemma2": 2, "gpt_oss": 2, "gemma3": 6, "gemma3_text": 6, "cohere2": 4}
# ``layer_types`` entries (and Nemotron-H's pattern letters) -> our kinds
LAYER_TYPES = {"full_attention": "attention", "attention": "attention", "global_attention": "attention",
               "sliding_attention": "sliding", "local_attention": "sliding",
               "mamba": "recurrent", "linear_attention": "recurrent", "conv": "recurrent", "recurrent": "recurrent",
               "mlp": "none", "moe": "none"}
PATTERN_LETTERS = {"M": "recurrent", "*": "attention", "-": "none", "E": "none"}
# whole-model recurrent families: model_type -> the state they hold
RECURRENT_MODELS = {"mamba": "Mamba-1", "falcon_mamba": "Mamba-1", "mamba2": "Mamba-2",
                    "rwkv": "RWKV-4", "rwkv5": "RWKV-5/6", "rwkv6": "RWKV-5/6"}
# hybrids whose layer layout this reader does not know: refused rather than miscounted
UNREAD = ("falcon_h1", "zamba", "zamba2", "recurrent_gemma", "xlstm", "rwkv7", "llama4", "llama4_text")


@dataclass(frozen=True)
class LayerKV:
    """One layer's cache, in bytes: ``per_token`` while it grows, up to ``cap`` tokens (None: every
    position), plus ``fixed`` held whatever the length (None: a state whose sizes the config does not give)."""

    kind: str
    per_token: float = 0.0
    cap: int | None = None
    fixed: float | None = 0.0
    state: str = ""      # which recurrent state ('Mamba-1', ...), '' for attention layers

    def bytes_at(self, context: int) -> float:
        held = context if self.cap is None else min(context, self.cap)
        return held * self.per_token + (self.fixed or 0.0)


@dataclass(frozen=True)
class LayerGroup:
    """Layers alike in every count, and which ones they are."""

    layer: LayerKV
    indices: tuple[int, ...]


@dataclass(frozen=True)
class KVReport:
    """A config's cache, layer by layer, next to what the generic formula says.

    ``generic_per_token``: 2 * L * n_kv * hd * bytes over every layer (hd = ``head_dim``, else
    hidden_size / num_attention_heads), None for a model with no attention heads at all.
    """

    model_type: str
    dtype: str
    layers: tuple[LayerKV, ...]
    generic_per_token: float | None
    generic_terms: dict  # n_layer, n_kv_heads, head_dim, bytes of the generic formula

    @property
    def bytes_per_token(self) -> float:
        """Bytes each new token adds while no window is full yet (every growing layer)."""
        return sum(layer.per_token for layer in self.layers)

    @property
    def fixed_bytes(self) -> float:
        """Bytes held whatever the length: the recurrent states the config gives sizes for."""
        return sum(layer.fixed or 0.0 for layer in self.layers)

    @property
    def uncounted_layers(self) -> int:
        """Layers with a recurrent state whose sizes the config does not give (counted as 0)."""
        return sum(layer.fixed is None for layer in self.layers)

    def bytes_at(self, context: int, batch: int = 1) -> float:
        """The whole cache for ``batch`` sequences of ``context`` tokens."""
        context, batch = check_int("context", context, 0), check_int("batch", batch, 1)
        return batch * sum(layer.bytes_at(context) for layer in self.layers)

    def generic_at(self, context: int, batch: int = 1) -> float | None:
        """What the generic formula says for the same cache (None without attention heads)."""
        context, batch = check_int("context", context, 0), check_int("batch", batch, 1)
        return None if self.generic_per_token is None else batch * context * self.generic_per_token

    def groups(self) -> list[LayerGroup]:
        """Alike layers together, in the order they first appear."""
        found: dict[LayerKV, list[int]] = {}
        for i, layer in enumerate(self.layers):
            found.setdefault(layer, []).append(i)
        return [LayerGroup(layer, tuple(indices)) for layer, indices in found.items()]


def _number(config: dict, names: tuple[str, ...], needed_for: str, low: int = 1, high: int = MAX_WIDTH,
            default: int | None = None) -> int:
    """The first of ``names`` the config sets, checked to lie in low..high; else ``default``; else an error."""
    for name in names:
        if config.get(name) is not None:
            return check_int(name, config[name], low, high)
    if default is not None:
        return default
    raise InputError("error.config_missing", field=" / ".join(names), needed_for=needed_for)


def text_part(config) -> dict:
    """The text model's fields: a multimodal config keeps them in ``text_config``."""
    if not isinstance(config, dict):
        raise InputError("error.config_object", kind=type(config).__name__)
    inner = config.get("text_config")
    layered = any(config.get(k) is not None for k in ("num_hidden_layers", "n_layer", "num_layers"))
    return inner if isinstance(inner, dict) and not layered else config


def n_layers(config: dict) -> int:
    """How many layers: ``num_hidden_layers`` (or GPT-2's ``n_layer``), else the length of the layer list."""
    for listed in ("layer_types", "layers_block_type"):
        if isinstance(config.get(listed), list) and config.get("num_hidden_layers") is None:
            return check_int(f"len({listed})", len(config[listed]), 1, MAX_LAYERS)
    if isinstance(config.get("hybrid_override_pattern"), str) and config.get("num_hidden_layers") is None:
        return check_int("len(hybrid_override_pattern)", len(config["hybrid_override_pattern"]), 1, MAX_LAYERS)
    return _number(config, ("num_hidden_layers", "n_layer", "num_layers"), "counting layers", high=MAX_LAYERS)


def attention_shape(config: dict, needed_for: str = "attention layers") -> tuple[int, int]:
    """(n_kv_heads, head_dim) of the plain attention layers."""
    n_heads = _number(config, ("num_attention_heads", "n_head"), needed_for, high=4096)
    multi_query = 1 if config.get("multi_query") is True else None  # GPT-BigCode, Falcon-7B: one K/V head
    n_kv = _number(config, ("num_key_value_heads", "num_kv_heads"), needed_for, high=4096,
                   default=multi_query or n_heads)
    if n_heads % n_kv:
        raise InputError("error.heads_divisible", n_heads=n_heads, n_kv_heads=n_kv)
    if config.get("head_dim") is not None:
        return n_kv, check_int("head_dim", config["head_dim"], 1, 65536)
    hidden = _number(config, ("hidden_size", "n_embd", "d_model"), needed_for)
    if hidden % n_heads:
        raise InputError("error.config_head_dim", hidden=hidden, n_heads=n_heads)
    return n_kv, hidden // n_heads


def layer_kinds(config: dict, model_type: str, count: int) -> list[str]:
    """Each layer's kind before windows are read: attention, sliding, mla, recurrent or none."""
    listed = next((k for k in ("layer_types", "layers_block_type") if config.get(k) is not None), None)
    if listed:
        entries, table, field = config[listed], LAYER_TYPES, listed
    elif config.get("hybrid_override_pattern") is not None:
        entries, table, field = config["hybrid_override_pattern"], PATTERN_LETTERS, "hybrid_override_pattern"
    elif config.get("attn_layer_period") is not None:  # Jamba
        period = _number(config, ("attn_layer_period",), "Jamba's layer layout", high=MAX_LAYERS)
        offset = _number(config, ("attn_layer_offset",), "Jamba's layer layout", low=0, high=period - 1)
        return ["attention" if i % period == offset else "recurrent" for i in range(count)]
    elif config.get("attn_layer_indices") is not None:  # Bamba
        indices = config["attn_layer_indices"]
        if not isinstance(indices, list):
            raise InputError("error.config_layer_list", field="attn_layer_indices", value=indices)
        attention = {check_int("attn_layer_indices[]", i, 0, count - 1) for i in indices}
        return ["attention" if i in attention else "recurrent" for i in range(count)]
    elif model_type in RECURRENT_MODELS:
        return ["recurrent"] * count
    else:
        return ["attention"] * count
    if not isinstance(entries, (list, str)):
        raise InputError("error.config_layer_list", field=field, value=entries)
    if len(entries) != count:
        raise InputError("error.config_layer_count", field=field, listed=len(entries), layers=count)
    unknown = sorted({str(e) for e in entries if not isinstance(e, str) or e not in table})
    if unknown:
        raise InputError("error.config_layer_type", field=field, value=unknown[0], known=", ".join(table))
    return [table[e] for e in entries]


def slide(config: dict, model_type: str, kinds: list[str]) -> list[str]:
    """Mark the attention layers that keep only a window, when the config says so by rule (a list of
    layer types, when there is one, already says it layer by layer)."""
    listed = any(config.get(k) is not None for k in ("layer_types", "layers_block_type"))
    if config.get("sliding_window") is None or listed:
        return kinds
    if "use_sliding_window" in config:  # Qwen2: layers from max_window_layers on slide, if switched on
        if config["use_sliding_window"] is not True:
            return kinds
        first = _number(config, ("max_window_layers",), "Qwen2's sliding layers", low=0, high=MAX_LAYERS)
        return ["sliding" if k == "attention" and i >= first else k for i, k in enumerate(kinds)]
    every = config.get("sliding_window_pattern")
    every = DEFAULT_PATTERN.get(model_type) if every is None else every
    if every is not None:  # every n-th layer global, the rest local (Gemma-3: 5 local, then 1 global)
        every = check_int("sliding_window_pattern", every, 1, MAX_LAYERS)
        return ["sliding" if k == "attention" and (i + 1) % every else k for i, k in enumerate(kinds)]
    return ["sliding" if k == "attention" else k for k in kinds]  # Mistral: every layer


def recurrent_state(config: dict, model_type: str, size: float) -> tuple[str, float | None]:
    """(which state, bytes per layer) of an attention-free layer; (name, None) when the config lacks its sizes."""
    wide = max(size, 4)  # the SSM / WKV state is float32 at least
    kind = RECURRENT_MODELS.get(model_type)
    hybrid = kind is None
    if hybrid and any(config.get(k) is not None for k in ("mamba_num_heads", "mamba_n_heads")):
        kind = "Mamba-2"
    elif hybrid and config.get("mamba_d_state") is not None:
        kind = "Mamba-1"
    if kind is None:
        return "", None
    what = f"the {kind} state"
    if kind == "Mamba-1":  # Jamba prefixes its Mamba fields; MambaForCausalLM does not
        names = ("mamba_d_state", "mamba_d_conv", "mamba_expand") if hybrid else ("state_size", "conv_kernel", "expand")
        d_state, d_conv, expand = (_number(config, (name,), what, high=65536) for name in names)
        d_inner = expand * _number(config, ("hidden_size", "d_model"), what)
        return kind, d_inner * (d_conv - 1) * size + d_inner * d_state * wide
    if kind == "Mamba-2":
        heads = _number(config, ("mamba_num_heads", "mamba_n_heads") if hybrid else ("num_heads",), what, high=65536)
        head_dim = _number(config, ("mamba_head_dim", "mamba_d_head") if hybrid else ("head_dim",), what, high=65536)
        d_state = _number(config, ("ssm_state_size", "mamba_d_state") if hybrid else ("state_size",), what, high=65536)
        groups = _number(config, ("n_groups", "mamba_n_groups"), what, high=65536)
        d_conv = _number(config, ("conv_kernel", "mamba_d_conv"), what, high=1024)
        d_inner = heads * head_dim
        return kind, (d_inner + 2 * groups * d_state) * (d_conv - 1) * size + d_inner * d_state * wide
    d = _number(config, ("hidden_size",), what)
    if kind == "RWKV-4":
        return kind, 2 * d * size + 3 * d * wide
    d_att = _number(config, ("attention_hidden_size", "hidden_size"), what)
    head = _number(config, ("head_size",), what, high=65536)
    return kind, 2 * d * size + d_att * head * wide


def one_layer(kind: str, config: dict, model_type: str, size: float) -> LayerKV:
    """What one layer of this kind caches, with elements of ``size`` bytes (every such layer is alike)."""
    if kind in ("attention", "sliding"):
        n_kv, head_dim = attention_shape(config)
        cap = _number(config, ("sliding_window",), "sliding layers", high=1 << 30) if kind == "sliding" else None
        return LayerKV(kind, 2 * n_kv * head_dim * size, cap)
    if kind == "mla":
        rank = _number(config, ("kv_lora_rank",), "MLA layers", high=65536)
        rope = _number(config, ("qk_rope_head_dim",), "MLA layers", low=0, high=65536)
        return LayerKV(kind, (rank + rope) * size)
    if kind == "recurrent":
        state, fixed = recurrent_state(config, model_type, size)
        return LayerKV(kind, fixed=fixed, state=state)
    return LayerKV(kind)


def kv_from_config(config: dict, dtype: str = "bf16") -> KVReport:
    """Count what each layer of a Hugging Face ``config.json`` (a parsed dict) caches, in ``dtype``.

    Raises ``InputError`` (a ValueError) naming the field that is missing, absurd or unknown.
    """
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise InputError("error.cache_dtype", dtype=dtype, valid=", ".join(DTYPE_BYTES))
    size = DTYPE_BYTES[dtype]
    config = text_part(config)
    model_type = str(config.get("model_type") or "")
    if model_type in UNREAD:
        raise InputError("error.config_unread", model_type=model_type)
    count = n_layers(config)
    kinds = slide(config, model_type, layer_kinds(config, model_type, count))
    if config.get("kv_lora_rank") is not None:  # DeepSeek-V2/V3: every attention layer caches the latent
        kinds = ["mla" if kind == "attention" else kind for kind in kinds]
    layer_of = {kind: one_layer(kind, config, model_type, size) for kind in dict.fromkeys(kinds)}
    layers = tuple(layer_of[kind] for kind in kinds)
    generic, terms = None, {}
    if config.get("num_attention_heads") is not None or config.get("n_head") is not None:
        n_kv, head_dim = attention_shape(config, "the generic formula")
        generic = 2 * count * n_kv * head_dim * size
        terms = dict(n_layer=count, n_kv_heads=n_kv, head_dim=head_dim, bytes=size)
    return KVReport(model_type, dtype, layers, generic, terms)


# The cache-relevant fields of published config.json files, for the page's examples.
EXAMPLES: dict[str, dict] = {
    "Mistral-7B-v0.1 (sliding window 4096)": {
        "model_type": "mistral", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
        "num_hidden_layers": 32, "sliding_window": 4096, "max_position_embeddings": 32768},
    "Gemma-3-1B (5 local : 1 global)": {
        "model_type": "gemma3_text", "hidden_size": 1152, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 256, "num_hidden_layers": 26, "sliding_window": 512, "sliding_window_pattern": 6},
    "DeepSeek-V2 (MLA)": {
        "model_type": "deepseek_v2", "hidden_size": 5120, "num_attention_heads": 128, "num_key_value_heads": 128,
        "num_hidden_layers": 60, "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64, "v_head_dim": 128},
    "Jamba-v0.1 (1 attention : 7 Mamba)": {
        "model_type": "jamba", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
        "num_hidden_layers": 32, "attn_layer_period": 8, "attn_layer_offset": 4, "mamba_d_state": 16,
        "mamba_d_conv": 4, "mamba_expand": 2},
    "mamba-130m (recurrent state only)": {
        "model_type": "mamba", "hidden_size": 768, "state_size": 16, "expand": 2, "conv_kernel": 4,
        "num_hidden_layers": 24},
    "Llama-3-8B (GQA, 8 K/V heads)": {
        "model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
        "num_hidden_layers": 32, "rope_theta": 500000.0},
}
