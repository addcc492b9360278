"""A transformers model that records its attention: ``HubModel`` wraps any checkpoint whose class uses the interface.

The model itself is transformers' own (``AutoModelForCausalLM``, ``...ForMaskedLM``, ``...ForSeq2SeqLM``), loaded with
``attn_implementation="playground"``: nothing of it is rewritten. ``HubModel`` tags each of its modules in the
registry ``attention.LAYERS`` with the attention kind its place in the model implies (self, encoder_self,
decoder_self, cross) and the layer's type, and owns the recorder those layers write into. Layers are numbered per
kind in the order a forward calls them, so an encoder-decoder's interleaved decoder-self and cross calls each count
0, 1, 2, ... and a hybrid's attention layers count among themselves (their label names their place in the stack).

Glossary: B batch, T tokens, S source tokens (encoder-decoder), V vocabulary.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from playground.models.base import LOGITS, ModelOutput
from playground.models.hf.attention import LAYERS, NAME, LayerTag, RunSettings
from playground.models.hf.shape import ATTENTION_TYPES, HubConfig, layer_types
from playground.nn.recorder import AttentionRecord, Recorder

TASKS = ("causal", "masked", "seq2seq")  # what the head on top predicts
CROSS_NAMES = ("encoder_attn", "encdecattention", "crossattention", "cross_attn", "cross_attention")
OUTPUT_PROJECTIONS = ("o_proj", "out_proj", "dense", "c_proj", "o", "wo", "Wo", "out")  # what architectures call W_O
FINAL_NORMS = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f", "final_norm",
               "embedding_norm")  # LFM2 names its final norm so


def kind_of(path: str, encoder_decoder: bool) -> str:
    """The attention kind of the module at ``path`` (``model.decoder.layers.0.encoder_attn``) in its model."""
    low = path.lower()
    if any(name in low for name in CROSS_NAMES):
        return "cross"
    if not encoder_decoder:
        return "self"
    parts = low.split(".")
    return "encoder_self" if "encoder" in parts and "decoder" not in parts else "decoder_self"


def layer_label(config, layer_idx: int | None) -> str | None:
    """What sets the layer ``layer_idx`` apart, as codes joined by ",": ``sliding:512`` / ``full`` where window and
    full layers alternate, ``nope`` where RoPE skips the layer, ``hybrid:3:8`` for attention at layer 3 of 8 among
    Mamba or convolution layers; None where every layer is alike. The page words them (``layer_type.*``)."""
    if layer_idx is None:
        return None
    parts = []
    types = layer_types(config)
    if types and layer_idx < len(types):
        mine = types[layer_idx]
        hybrid = any(t not in ATTENTION_TYPES for t in types)
        if hybrid:
            parts.append(f"hybrid:{layer_idx}:{len(types)}")
        elif len(set(types)) > 1:
            window = getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None)
            parts.append(f"sliding:{window}" if mine != "full_attention" and window else "full")
    no_rope = getattr(config, "no_rope_layers", None)
    if no_rope and layer_idx < len(no_rope) and not no_rope[layer_idx]:
        parts.append("nope")
    return ",".join(parts) or None


class HubModel(nn.Module):
    """A transformers model with every attention call recorded while ``capture()`` is open.

    Args:
        hf: the transformers model, loaded with ``attn_implementation="playground"``.
        cfg: its shape (``shape.HubConfig``): the task (causal | masked | seq2seq) and the kernel every layer runs.
    """

    def __init__(self, hf: nn.Module, cfg):
        super().__init__()
        if cfg.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {cfg.task!r}")
        self.hf, self.cfg, self.task = hf, cfg, cfg.task
        self.settings = RunSettings(backend=cfg.backend, window=cfg.window)
        self.past = None          # transformers' own cache object while decoding (``setup_cache``), else None
        self.use_cache = False
        config = hf.config
        self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        for path, module in hf.named_modules():
            LAYERS[module] = LayerTag(kind_of(path, self.encoder_decoder),
                                      layer_label(config, getattr(module, "layer_idx", None)), self.settings)

    @classmethod
    def wrap(cls, hf: nn.Module, backend: str = "auto") -> "HubModel":
        """A transformers model already built with ``attn_implementation="playground"``, wrapped."""
        config = {**hf.config.to_dict(), "architectures": [type(hf).__name__]}  # the head it was built with
        return cls(hf, HubConfig.of(config, backend))

    @property
    def recorder(self) -> Recorder:
        return self.settings.recorder

    @property
    def config(self):
        """transformers' config of the model."""
        return self.hf.config

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_output_embeddings().weight.shape[0])

    @contextmanager
    def capture(self) -> Iterator[list[AttentionRecord]]:
        """Record every attention call of the block, in the order the layers run."""
        with self.recorder.capture() as records:
            yield records

    def forward(self, ids: Tensor, target_ids: Tensor | None = None, attention_mask: Tensor | None = None, *,
                capture: bool = False, logits: str = "all", prefix_len: int = 0, start_pos: int = 0) -> ModelOutput:
        """One forward of the wrapped model.

        Args:
            ids: (B, T) the prompt (an encoder-decoder's source).
            target_ids: (B, T') the decoder's input (encoder-decoder only; default: its start token).
            attention_mask: (B, T) 1 for real tokens, 0 for padding.
            logits: all | last | none (``base.LOGITS``): none skips nothing transformers cannot skip, and returns None.
            prefix_len: 0 (a prefix decoder's bidirectional prefix is the playground's own GLM-style models').
            start_pos: the position of ids[0]; while a cache is set up, transformers counts it from the cache itself.
        Returns:
            ModelOutput: logits (B, T, V) (the decoder's positions for an encoder-decoder), and the records of the call
            when ``capture``.
        """
        if logits not in LOGITS:
            raise ValueError(f"logits must be one of {', '.join(LOGITS)}, got {logits!r}")
        if ids.dim() != 2:
            raise ValueError(f"token ids must have shape (batch, length), got {tuple(ids.shape)}")
        if prefix_len:
            raise ValueError(f"prefix_len={prefix_len}: a Hub model's mask is its own (a prefix is for GLM-style "
                             "playground models)")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}, got {int(ids.min())}..{int(ids.max())}")
        kwargs = {"input_ids": ids.to(self.device), "attention_mask": attention_mask}
        if self.encoder_decoder:
            if target_ids is None:
                target_ids = torch.full((ids.shape[0], 1), self.start_id, dtype=torch.long)
            kwargs["decoder_input_ids"] = target_ids.to(self.device)
        elif target_ids is not None:
            raise ValueError("target_ids are for an encoder-decoder; this model reads one sequence")
        return self._run(kwargs, capture, logits)

    def _run(self, kwargs: dict, capture: bool, logits: str) -> ModelOutput:
        """One call of the wrapped model with ``kwargs``, through the cache while one is set up."""
        if logits != "all" and self.task == "causal":  # "none": the head over one position, not every one
            kwargs["logits_to_keep"] = 1
        kwargs["use_cache"] = self.use_cache
        if self.use_cache and self.past is not None:
            kwargs["cache"] = self.past
        elif self.use_cache and self.settings.window:  # the page's window: the cache keeps what it lets queries see
            kwargs["cache"] = windowed_cache(self.hf.config, self.settings.window)
        self.settings.calls.clear()
        self.settings.modules.clear()
        context = self.capture() if capture else _outer(self.recorder)
        with context as records:
            out = self.hf(**{k: v for k, v in kwargs.items() if v is not None})
        if self.use_cache:
            self.past = out.cache
        result = out.logits if logits == "all" else (out.logits[:, -1:] if logits == "last" else None)
        return ModelOutput(result, list(records))

    @property
    def start_id(self) -> int:
        """The token an encoder-decoder's decoder starts from (``decoder_start_token_id``)."""
        start = getattr(self.config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(self.config, "bos_token_id", None) or 0
        return int(start)

    # --- decoding, with transformers' own cache --------------------------------------------
    def encode(self, src: Tensor) -> tuple:
        """An encoder-decoder's encoder over the source (B, S): (its output, as transformers' decoder takes it,)."""
        if not self.encoder_decoder:
            raise ValueError("encode is for an encoder-decoder")
        return (self.hf.get_encoder()(input_ids=src.to(self.device)),)

    def decode(self, target_ids: Tensor, memory, *, start_pos: int = 0, capture: bool = False,
               logits: str = "all") -> ModelOutput:
        """The decoder over ``target_ids`` (B, T) (the tokens after ``start_pos`` while a cache is set up), attending to
        the encoder output ``memory``."""
        return self._run({"encoder_outputs": memory, "decoder_input_ids": target_ids.to(self.device)}, capture, logits)

    def setup_cache(self, batch: int = 1, max_len: int | None = None) -> None:
        """Decode through transformers' cache from the next call on (it creates the cache object it needs: dynamic,
        sliding-window layers capped, a hybrid's fixed state, an encoder-decoder's cross-attention K/V; under the
        page's window every attention layer's cache is capped at that window, ``windowed_cache``)."""
        self.use_cache, self.past = True, None

    def clear_cache(self) -> None:
        self.use_cache, self.past = False, None

    def cache_bytes(self) -> int:
        """Bytes of the tensors transformers' cache object holds now (``nbytes``: the positions in use)."""
        return _tensor_bytes(self.past)

    def cache_bytes_allocated(self) -> int:
        """Bytes of the storages behind them (>= ``cache_bytes``: a view keeps its whole block alive)."""
        return _tensor_bytes(self.past, allocated=True)

    def stack(self) -> tuple[nn.ModuleList, nn.Module]:
        """A decoder-only model's blocks (the ``ModuleList`` of ``num_hidden_layers`` layers) and its final norm, the
        module whose output the head reads (``norm``, ``final_layernorm``, ``ln_f``, ...); ValueError where the model
        has no such pair."""
        base = self.hf.base_model
        count = getattr(self.config.get_text_config(), "num_hidden_layers", None)
        blocks = next((m for m in base.modules() if isinstance(m, nn.ModuleList) and len(m) == count), None)
        inside = {id(m) for m in blocks.modules()} if blocks is not None else set()
        norms = [m for name, m in base.named_modules() if name.rsplit(".", 1)[-1] in FINAL_NORMS and id(m) not in inside]
        if blocks is None or not norms:
            raise ValueError(f"a {self.cfg.model_type} model has no list of {count} blocks and final norm to read")
        return blocks, norms[-1]

    def output_weights(self, module: nn.Module, n_heads: int, head_dim: int) -> Tensor:
        """W_O^h of an attention module: the rows of its output projection that read head h. (nh, dv, d)

        The projection is the module's own child that takes nh * dv features to the model's width (``o_proj``,
        ``out_proj``, ``dense``, GPT-2's ``c_proj``, a Conv1D that stores its weight transposed); ValueError where the
        architecture keeps it outside the attention module (BERT's)."""
        width = n_heads * head_dim
        for name, child in module.named_children():
            weight = getattr(child, "weight", None)
            if name not in OUTPUT_PROJECTIONS:  # q, k and v projections have the same width: only these names
                continue
            if weight is None or weight.dim() != 2:
                continue
            if isinstance(child, nn.Linear) and child.in_features == width:
                return weight.T.reshape(n_heads, head_dim, -1)  # Linear: (d, nh * dv)
            if type(child).__name__ == "Conv1D" and weight.shape[0] == width:
                return weight.reshape(n_heads, head_dim, -1)  # Conv1D: (nh * dv, d)
        raise ValueError(f"a {self.cfg.model_type} attention layer keeps its output projection outside the module "
                         "transformers hands the attention function: the value norms cannot read W_O")

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.hf.parameters())


def build(cfg: HubConfig) -> HubModel:
    """A ``HubModel`` of this shape with transformers' initial weights (under ``torch.device("meta")`` it allocates
    nothing, as ``models.shared.instance`` and the parameter count build it)."""
    hf = cfg.model_class._from_config(cfg.transformers_config, attn_implementation=NAME)
    return HubModel(hf.eval(), cfg)


@contextmanager
def _outer(recorder: Recorder) -> Iterator[list]:
    yield []


def windowed_cache(config, window: int):
    """transformers' cache for ``config`` with every attention layer a sliding-window layer of ``window`` positions
    (what the page's window lets a query see: older keys are dropped as decoding goes on, as a model with that
    window in its config.json drops them); a hybrid's recurrent layers keep their own state."""
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    def capped(layer):
        if type(layer) is DynamicLayer:
            return DynamicSlidingWindowLayer(sliding_window=window)
        if type(layer) is DynamicSlidingWindowLayer:  # a sliding layer keeps the narrower of its window and the page's
            return DynamicSlidingWindowLayer(sliding_window=min(layer.sliding_window, window))
        return layer

    cache = DynamicCache(config=config)
    cache.layers = [capped(layer) for layer in cache.layers]
    return cache


def _tensor_bytes(obj, allocated: bool = False, depth: int = 5) -> int:
    """Bytes of the floating-point tensors reachable from ``obj`` (a cache object: its layers' keys, values and
    states; integer bookkeeping left out): their ``nbytes`` (the positions held), or with ``allocated`` the storages
    behind them, each once (a sliding layer's keys may be a view into a larger block)."""
    seen: dict[int, int] = {}

    def walk(o, d: int) -> None:
        if isinstance(o, Tensor):
            if o.is_floating_point():
                storage = o.untyped_storage()
                key, size = (storage.data_ptr(), storage.nbytes()) if allocated else (id(o), o.nbytes)
                seen[key] = size
        elif d > 0 and isinstance(o, (list, tuple)):
            for item in o:
                walk(item, d - 1)
        elif d > 0 and isinstance(o, dict):
            for item in o.values():
                walk(item, d - 1)
        elif d > 0 and hasattr(o, "__dict__") and not isinstance(o, nn.Module):
            for item in vars(o).values():
                walk(item, d - 1)

    if obj is not None:
        walk(obj, depth)
    return sum(seen.values())
