"""What the page and its API call: text in, plain data out, models loaded once.

The UI never touches tensors: it picks a model (``resolve``), then calls ``analyze_text``,
``generate_text`` or ``kv_cache_series`` and hands the numpy results to ``plots``. Loaded
models are cached per (model, backend, device, window); each has a lock, because generation
writes into the model's KV cache.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from playground import zoo
from playground.train import data
from playground.inspect.analysis import Analysis, analyze
from playground.nn.cache import dtype_bytes, kv_elements_per_token, state_bytes_per_layer
from playground.config import ModelConfig
from playground.inspect.generation import generate
from playground.ui.i18n import Message, MessageError, msg
from playground.train.tokenizer import Tokenizer
from playground.models.base import LanguageModel
from playground.models import build_model

MAX_PROMPT_TOKENS = 1024
MAX_IMPLICIT_TOKENS = 512   # RWKV / Mamba: implicit attention costs T² x channels
MAX_PROMPT_CHARS = 20_000   # longer text is cut before tokenizing (1024 tokens are ~2,700 characters)
ENCDEC_TARGET_TOKENS = 24   # an encoder-decoder's decoder side: its own greedy continuation


@dataclass(frozen=True)
class Choice:
    """A model to run: a zoo entry by name, or an untrained model of the given shape."""

    family: str
    variant: str
    position: str
    name: str | None = None        # zoo entry; None: untrained (random weights)
    backend: str = "auto"
    device: str = "cpu"
    window: int = 0

    @property
    def untrained(self) -> bool:
        return self.name is None

    @property
    def label(self) -> Message:
        if self.untrained:
            return msg("choice.untrained", shape=f"{self.family} · {self.variant} · {self.position}")
        return msg("choice.zoo", name=self.name)


@dataclass
class Loaded:
    model: LanguageModel
    choice: Choice
    lock: threading.Lock = field(default_factory=threading.Lock)


def about(name: str) -> Message:
    """What a zoo or user model is, in the reader's language (``zoo.about`` is the English)."""
    return msg(f"zoo.about.{name}" if name in zoo.ZOO else "zoo.about.user")


def devices() -> list[str]:
    return (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]


def resolve(family: str, variant: str, position: str, *, task_model: str | None = None,
            fallback: str = "nearest", backend: str = "auto", device: str = "cpu", window: int = 0) -> tuple[Choice, Message]:
    """The model for these choices, and a sentence saying what was picked and why."""
    common = dict(backend=backend, device=device, window=window)
    if task_model:
        try:
            cfg = zoo.config_of(task_model)
        except ValueError as e:
            raise MessageError("error.model_unreadable", name=task_model, reason=str(e)) from None
        return Choice(cfg.family, cfg.variant, cfg.position, name=task_model, **common), \
            msg("choice.task", name=task_model, shape=f"{cfg.family} · {cfg.variant} · {cfg.position}",
                about=about(task_model))
    exact, nearest = zoo.match(family, variant, position)
    shape = family if family in zoo.RECURRENT else f"{family} · {variant} · {position}"
    if exact:
        return Choice(family, variant, position, name=exact, **common), \
            msg("choice.exact", name=exact, about=about(exact))
    if nearest is None:
        return Choice(family, variant, position, **common), msg("choice.none_installed", shape=shape)
    if fallback == "untrained":
        return Choice(family, variant, position, **common), msg("choice.not_shipped_untrained", shape=shape)
    cfg = zoo.entry_configs(nearest)[0]
    return Choice(cfg.family, cfg.variant, cfg.position, name=nearest, **common), \
        msg("choice.nearest", shape=shape, name=nearest, nearest_shape=f"{cfg.family} · {cfg.variant} · {cfg.position}")


@lru_cache(maxsize=24)
def load(choice: Choice) -> Loaded:
    if choice.device not in devices():
        raise MessageError("error.device", device=choice.device, devices=", ".join(devices()))
    if choice.untrained:
        torch.manual_seed(0)
        cfg, state = zoo.untrained_config(choice.family, choice.variant, choice.position), None
    else:
        stored = zoo.load(choice.name)
        cfg, state = stored.cfg, stored.state_dict()
    cfg = cfg.replace(backend=choice.backend, sliding_window=min(choice.window, cfg.context_length))
    model = build_model(cfg)
    if state is not None:
        model.load_state_dict(state)
    return Loaded(model.to(choice.device).eval(), choice)


@lru_cache(maxsize=1)
def tokenizer() -> Tokenizer:
    return Tokenizer.load()


def tokenize(text: str, cfg: ModelConfig) -> tuple[list[int], list[Message]]:
    """Token ids of a prompt, cut to what the model can take, and notes saying what was cut."""
    if not isinstance(text, str) or not text.strip():
        raise MessageError("error.prompt_empty")
    notes = []
    if len(text) > MAX_PROMPT_CHARS:
        notes.append(msg("note.chars_cut", chars=len(text), limit=MAX_PROMPT_CHARS))
        text = text[:MAX_PROMPT_CHARS]
    ids = tokenizer().encode(text)
    if cfg.position == "learned":
        limit, why = cfg.context_length, msg("note.why_learned")
    elif cfg.family in zoo.RECURRENT:
        limit, why = MAX_IMPLICIT_TOKENS, msg("note.why_implicit")
    else:
        limit, why = MAX_PROMPT_TOKENS, msg("note.why_page")
    if len(ids) > limit:
        notes.append(msg("note.tokens_cut", tokens=len(ids), limit=limit, why=why))
        ids = ids[:limit]
    return ids, notes


def labels(ids: list[int]) -> list[str]:
    return tokenizer().labels(ids)


TASK_LABELS = {data.PAD_ID: "PAD", data.BOS_ID: "BOS", data.SEP_ID: "SEP", data.QUERY_ID: "QUERY"}


def task_labels(ids: list[int]) -> list[str]:
    return [TASK_LABELS.get(i) or label for i, label in zip(ids, labels(ids))]


def task_sequence(name: str, seed: int = 0) -> tuple[list[int], list[int] | None, int]:
    """A seeded sequence of a synthetic-task model's own task: (input ids, decoder ids or None,
    how many leading ids form the prompt for generation)."""
    cfg, tcfg = zoo.entry_configs(name)
    task = tcfg.data.removeprefix("task:")
    n = tcfg.task_length
    if cfg.family == "encdec":
        src, tgt_in, _ = data.SEQ2SEQ_TASKS[task](1, n, cfg.vocab_size, seed)
        return src[0].tolist(), tgt_in[0].tolist(), n
    x, _, mask = data.TASKS[task](1, n, cfg.vocab_size, seed)
    ids = x[0].tolist()
    answer_from = int(mask[0].float().argmax())  # first scored position: everything before is the question
    return ids, None, answer_from + 1


def analyze_text(choice: Choice, text: str, prefix_len: int = 0, seed: int = 0) -> tuple[Analysis, list[Message]]:
    """Run a prompt through the chosen model once, capturing every layer's attention.

    A synthetic-task model runs on a seeded sequence of its own task instead of the prompt.
    """
    loaded = load(choice)
    model, cfg = loaded.model, loaded.model.cfg
    if zoo.is_task(choice.name):
        ids, target, _ = task_sequence(choice.name, seed)
        with loaded.lock:
            result = analyze(model, ids, target_ids=target, labels=task_labels(ids),
                             target_labels=task_labels(target) if target else None)
        return result, [msg("note.task_analyze", name=choice.name, seed=seed)]
    ids, notes = tokenize(text, cfg)
    with loaded.lock:
        if cfg.family == "encdec":
            target = [1] + generate(model, ids, ENCDEC_TARGET_TOKENS).tokens
            result = analyze(model, ids, target_ids=target, labels=labels(ids), target_labels=labels(target))
            notes.append(msg("note.encdec_target", n=ENCDEC_TARGET_TOKENS))
        else:
            prefix_len = max(0, min(int(prefix_len), len(ids))) if cfg.family == "prefix" else 0
            result = analyze(model, ids, prefix_len=prefix_len, labels=labels(ids))
    return result, notes


@dataclass
class Timeline:
    """A generation with, per step, the new token's attention over the cache and the cache size
    (the positions held, and the tensors as allocated)."""

    prompt_labels: list[str]
    new_labels: list[str]
    text: str
    rows: list[dict[str, np.ndarray]]   # per step: kind -> (n_layer, nh, Tk)
    cache_bytes: list[int]              # per step, the positions the model's own cache holds
    cache_bytes_allocated: list[int]    # per step, its tensors as allocated (tensor.nbytes)
    source_labels: list[str]            # encoder-decoder: the source (cross-attention keys)
    n_layer: int
    n_heads: int


def generate_text(choice: Choice, text: str, max_new_tokens: int = 32, *, temperature: float = 0.0,
                  top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> tuple[Timeline, list[Message]]:
    loaded = load(choice)
    model, cfg = loaded.model, loaded.model.cfg
    max_new_tokens = int(max_new_tokens)
    show = labels
    if zoo.is_task(choice.name):
        ids, target, prompt_len = task_sequence(choice.name, seed)
        ids = ids if target else ids[:prompt_len]
        notes, show = [msg("note.task_generate", name=choice.name, seed=seed)], task_labels
    else:
        ids, notes = tokenize(text, cfg)
    if cfg.position == "learned" and len(ids) + max_new_tokens > cfg.context_length + 1:
        keep = max(1, cfg.context_length + 1 - max_new_tokens)
        if keep < len(ids):
            notes.append(msg("note.learned_keep", context=cfg.context_length, keep=keep))
            ids = ids[-keep:]
    with loaded.lock:
        gen = generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                       seed=seed, record=True)
    encdec = cfg.family == "encdec"
    tok = tokenizer()
    return Timeline(
        prompt_labels=show([1]) if encdec else show(ids), new_labels=show(gen.tokens),
        text=tok.decode(gen.tokens), rows=[s.attention for s in gen.steps],
        cache_bytes=[s.cache_bytes for s in gen.steps],
        cache_bytes_allocated=[s.cache_bytes_allocated for s in gen.steps], source_labels=show(ids) if encdec else [],
        n_layer=cfg.n_layer, n_heads=cfg.n_heads), notes


def kv_formulas(cfg: ModelConfig, dtype: str = "fp32") -> dict[Message, dict]:
    """Per-token KV bytes by formula at this model's dimensions (MLA: d_latent = 4 hs, d_rope = hs / 2,
    DeepSeek-V2's ratios), and the fixed state of RWKV-5 and Mamba at the same width. A model with a
    sliding window W adds its own variant capped at W positions ("cap")."""
    size = dtype_bytes(dtype)
    hs, nh, layers = cfg.head_dim, cfg.n_heads, cfg.n_layer
    per_token = {
        msg("kv.heads", variant="MHA", n=nh): kv_elements_per_token("MHA", nh, hs),
        msg("kv.heads", variant="GQA", n=max(1, nh // 2)): kv_elements_per_token("GQA", nh, hs, n_kv_heads=max(1, nh // 2)),
        msg("kv.one_head", variant="MQA"): kv_elements_per_token("MQA", nh, hs),
        msg("kv.mla", latent=4 * hs, rope=hs // 2): kv_elements_per_token("MLA", nh, hs, d_latent=4 * hs, d_rope=hs // 2),
    }
    out = {name: {"per_token": layers * e * size, "fixed": 0.0} for name, e in per_token.items()}
    if cfg.sliding_window and cfg.family not in zoo.RECURRENT:
        own = 2 * cfg.n_kv_heads * hs  # the model's own K/V heads
        out[msg("kv.window", n=cfg.n_kv_heads, window=cfg.sliding_window)] = {
            "per_token": layers * own * size, "fixed": 0.0, "cap": cfg.sliding_window}
    for kind in ("RWKV", "Mamba"):
        out[msg("kv.state", kind=kind)] = {"per_token": 0.0,
                                          "fixed": layers * state_bytes_per_layer(kind, cfg, dtype)}
    return out
