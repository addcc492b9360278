"""A transformers checkpoint's shape in the playground's words: ``HubConfig``, read from config.json alone.

The page speaks of a model by family (decoder, encoder, encoder-decoder), layers, query and K/V heads, position
encoding and window, whatever its ``model_type``. ``HubConfig.of(config.json)`` says that for any architecture
transformers knows, and which transformers class opens it, before a weight byte is read; ``check`` refuses one the
playground cannot record (its class does not route attention through the interface, e.g. ``bloom``).

It holds the same names ``ModelConfig`` gives a playground model (family, n_layer, n_heads, n_kv_heads, head_dim,
d_model, position, sliding_window, context_length, vocab_size, backend, variant), so the page's sentences, budgets
and limits read both; ``model.build`` makes its ``HubModel``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property

from playground.models.pretrained.checkpoint import check_sizes

FAMILY_OF_TASK = {"causal": "decoder", "masked": "encoder", "seq2seq": "encdec"}
ATTENTION_TYPES = ("full_attention", "sliding_attention", "chunked_attention", "attention", "hybrid")
ROPE_KEYS = ("rope_theta", "rope_parameters", "rope_scaling", "rotary_pct", "rotary_emb_base", "partial_rotary_factor",
             "qk_rope_head_dim")
RELATIVE_TYPES = ("t5", "mt5", "umt5", "longt5")
SINUSOIDAL_TYPES = ("marian", "m2m_100", "pegasus", "fsmt")


def layer_types(config) -> list[str] | None:
    """Each layer's type as the config lists it (``layer_types``, Jamba / Granite's ``layers_block_type``), or None."""
    types = getattr(config, "layer_types", None) or getattr(config, "layers_block_type", None)
    return list(types) if types else None


class UnsupportedModel(ValueError):
    """A config.json the playground cannot open through transformers' attention interface, with why."""


def _first(hf: dict, *names, default=None):
    for name in names:
        if hf.get(name) is not None:
            return hf[name]
    return default


def _transformers_config(hf: dict):
    """transformers' config object for a config.json dict (no code from the repository is ever run)."""
    from transformers import CONFIG_MAPPING

    model_type = hf.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UnsupportedModel(f"model_type {model_type!r} is not one transformers knows: the playground opens the "
                               "architectures transformers ships (custom code from a repository is never run)")
    cls = CONFIG_MAPPING[model_type]
    try:  # config.json writes inf and nan as {"__float__": "Infinity"}: decoded as transformers' own reader does
        return cls.from_dict(cls._decode_special_floats({k: v for k, v in hf.items() if k != "auto_map"}))
    except Exception as e:  # transformers' validation raises several types for a malformed config
        raise UnsupportedModel(f"config.json does not describe a {model_type} model transformers accepts: "
                               f"{str(e).splitlines()[0][:300]}") from None


def model_class(config) -> tuple[type, str]:
    """The transformers class that opens ``config`` with a language-model head, and its task (causal | masked |
    seq2seq): the class config.json's ``architectures`` names when it has one of those heads, else the first
    head transformers maps the config to."""
    import transformers
    from transformers.models.auto import modeling_auto as auto

    mappings = (("causal", auto.MODEL_FOR_CAUSAL_LM_MAPPING), ("seq2seq", auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING),
                ("masked", auto.MODEL_FOR_MASKED_LM_MAPPING))
    found = [(task, mapping[type(config)]) for task, mapping in mappings if type(config) in mapping]
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None) if isinstance(name, str) else None
        for task, mapped in found:
            if cls is not None and cls is mapped:
                return cls, task
    if not found:
        raise UnsupportedModel(f"transformers has no causal, masked or sequence-to-sequence language model for "
                               f"model_type {config.model_type!r}: the playground shows models that predict tokens")
    task, cls = found[0]
    return cls, task


def uses_interface(cls: type) -> bool:
    """Whether the modeling file of ``cls`` calls transformers' attention interface (``ALL_ATTENTION_FUNCTIONS``): then
    every attention layer in it hands its q, k and v to the registered function. Read from the file, not run."""
    import sys
    from pathlib import Path

    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    try:
        return path is not None and "ALL_ATTENTION_FUNCTIONS" in Path(path).read_text(encoding="utf-8")
    except OSError:
        return False


@dataclass
class HubConfig:
    """A transformers checkpoint as the page describes it; see the module docstring. ``hf`` is config.json."""

    hf: dict = field(repr=False)
    backend: str = "auto"
    window: int = 0  # the page's sliding window over every causal self-attention layer (0: each layer's own)

    @classmethod
    def of(cls, hf: dict, backend: str = "auto") -> "HubConfig":
        """The shape of a config.json dict; UnsupportedModel naming why it cannot be opened."""
        if not isinstance(hf, dict):
            raise UnsupportedModel(f"config.json must hold a JSON object, got {type(hf).__name__}")
        shape = cls(dict(hf), backend)
        shape.check()
        return shape

    @cached_property
    def transformers_config(self):
        return _transformers_config(self.hf)

    @cached_property
    def _class_task(self) -> tuple[type, str]:
        return model_class(self.transformers_config)

    def check(self) -> None:
        """UnsupportedModel when transformers cannot open this config with a head, or its class computes attention
        without the interface (then no function registered there sees its q and k); ValueError for a size past
        ``checkpoint.LIMITS``."""
        check_sizes({"n_layer": self.n_layer, "d_model": self.d_model, "n_heads": self.n_heads,
                     "vocab_size": self.vocab_size, "context_length": self.context_length})
        cls, _ = self._class_task
        if not uses_interface(cls):
            raise UnsupportedModel(f"{cls.__name__} computes attention in its own code, not through transformers' "
                                   "attention interface, so the playground cannot record its q, k and weights; pick "
                                   "another architecture")

    # --- what the page says --------------------------------------------------------------
    @property
    def model_class(self) -> type:
        return self._class_task[0]

    @property
    def task(self) -> str:
        return self._class_task[1]

    @property
    def model_type(self) -> str:
        return str(self.hf["model_type"])

    @property
    def family(self) -> str:
        return FAMILY_OF_TASK[self.task]

    @property
    def text_config(self):
        config = self.transformers_config
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    @property
    def n_layer(self) -> int:
        """Layers per stack (the decoder's for an encoder-decoder), attention or not."""
        c = self.text_config
        return int(_first(vars(c), "num_hidden_layers", "num_layers", "n_layer", "decoder_layers", default=0))

    @property
    def d_model(self) -> int:
        return int(_first(vars(self.text_config), "hidden_size", "d_model", "n_embd", "dim", default=0))

    @property
    def n_heads(self) -> int:
        return int(_first(vars(self.text_config), "num_attention_heads", "num_heads", "n_head",
                          "decoder_attention_heads", default=1))

    @property
    def n_kv_heads(self) -> int:
        return int(_first(vars(self.text_config), "num_key_value_heads", default=self.n_heads))

    @property
    def head_dim(self) -> int:
        c = vars(self.text_config)
        if c.get("qk_rope_head_dim") is not None and c.get("qk_nope_head_dim") is not None:  # MLA
            return int(c["qk_rope_head_dim"]) + int(c["qk_nope_head_dim"])
        return int(_first(c, "head_dim", "d_kv", default=self.d_model // max(1, self.n_heads)))

    @property
    def decoder_cache_shape(self) -> tuple[int, int, int]:
        """(decoder layers, K/V heads, head dim) of an encoder-decoder's decoder: what each of its self- and
        cross-attention layers caches per position (T5's num_decoder_layers and d_kv, BART's and Marian's
        decoder_layers and decoder_attention_heads)."""
        c = vars(self.text_config)
        layers = int(_first(c, "num_decoder_layers", "decoder_layers", default=self.n_layer))
        heads = int(_first(c, "decoder_attention_heads", "num_heads", "num_attention_heads", default=self.n_heads))
        kv_heads = int(_first(c, "num_key_value_heads", default=heads))
        return layers, kv_heads, int(_first(c, "d_kv", "head_dim", default=self.d_model // max(1, heads)))

    @property
    def variant(self) -> str:
        if "kv_lora_rank" in vars(self.text_config) and vars(self.text_config)["kv_lora_rank"]:
            return "MLA"
        if self.n_kv_heads == self.n_heads:
            return "MHA"
        return "MQA" if self.n_kv_heads == 1 else "GQA"

    @property
    def position(self) -> str:
        """rope | learned | sinusoidal | relative | alibi | none: what orders the tokens."""
        c = vars(self.text_config)
        if self.model_type in RELATIVE_TYPES:
            return "relative"
        if self.model_type in SINUSOIDAL_TYPES:
            return "sinusoidal"
        if c.get("alibi") or self.model_type in ("bloom", "mpt"):
            return "alibi"
        if any(c.get(k) is not None for k in ROPE_KEYS):
            return "rope"
        if c.get("max_position_embeddings") or c.get("n_positions"):
            return "learned"
        return "none"

    @property
    def own_window(self) -> int:
        """The window config.json gives its sliding layers (0: none)."""
        window = vars(self.text_config).get("sliding_window")
        return int(window) if isinstance(window, int) and window > 0 else 0

    @property
    def sliding_window(self) -> int:
        """The window this instance runs with: the page's where one is set, else the model's own."""
        return self.window or self.own_window

    @property
    def context_length(self) -> int:
        c = vars(self.text_config)
        return int(_first(c, "max_position_embeddings", "n_positions", default=1 << 15))

    @property
    def vocab_size(self) -> int:
        return int(_first(vars(self.text_config), "vocab_size", default=0))

    @property
    def layer_types(self) -> list[str] | None:
        return layer_types(self.text_config)

    @property
    def attention_layers(self) -> int:
        """Attention layers per stack: hybrids count only theirs."""
        types = self.layer_types
        if types and any(t not in ATTENTION_TYPES for t in types):
            return sum(t in ATTENTION_TYPES for t in types)
        return self.n_layer

    @property
    def attention_calls(self) -> int:
        """Attention calls of one forward: an encoder-decoder calls encoder-self, decoder-self and cross per layer."""
        return self.attention_layers * (3 if self.family == "encdec" else 1)

    def to_dict(self) -> dict:
        """The shape as plain data (the analysis' config): the page's names plus model_type and task."""
        return {"family": self.family, "model_type": self.model_type, "task": self.task, "n_layer": self.n_layer,
                "d_model": self.d_model, "n_heads": self.n_heads, "n_kv_heads": self.n_kv_heads,
                "head_dim": self.head_dim, "variant": self.variant, "position": self.position,
                "sliding_window": self.sliding_window, "context_length": self.context_length,
                "vocab_size": self.vocab_size, "backend": self.backend, "layer_types": self.layer_types,
                "window": self.window}

    def replace(self, **changes) -> "HubConfig":
        """The same model with another ``backend`` or ``sliding_window``: a window other than the model's own is imposed
        on every causal self-attention layer (a sliding layer keeps the narrower of the two); an encoder's or an
        encoder-decoder's is refused."""
        window = changes.pop("sliding_window", None)
        if window is not None:
            window = 0 if window == self.own_window else int(window)
            if window < 0:
                raise ValueError(f"sliding_window must be 0 (the model's own) or positive, got {window}")
            if window and self.family != "decoder":
                raise ValueError(f"a {self.model_type} model's attention is not causal throughout: a sliding window "
                                 "applies to a decoder-only model; set the window to 0")
            changes["window"] = window
        unknown = sorted(set(changes) - {"backend", "window"})
        if unknown:
            raise ValueError(f"a Hub model's instance may change only its backend and window, not {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def __hash__(self) -> int:
        return hash((json.dumps(self.hf, sort_keys=True, default=str), self.backend, self.window))
