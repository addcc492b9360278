"""The model zoo: shipped models that change one factor at a time from a baseline.

Every text model shares the tokenizer, the corpus split and the training budget (the same
steps of the same number of tokens); each entry differs from ``baseline`` in one field.
``python -m playground.train --zoo`` rebuilds them all (``--zoo NAME ...`` for some); a
finished entry is skipped unless ``--force``, an interrupted one resumes.
"""
from __future__ import annotations

import os
from pathlib import Path

from playground.nn.cache import cache_shape, state_bytes_per_layer
from playground.train.loop import TrainConfig
from playground.models.checkpoint import CARD, load_model, read_card
from playground.config import RECURRENT_FAMILIES, VARIANTS, ModelConfig, variant_fields
from playground.paths import MODELS_DIR, RUNS_DIR
from playground.models.base import LanguageModel

# Models trained in the page: never under models/, never overwriting a shipped one.
USER_DIR = Path(os.environ.get("PLAYGROUND_USER_MODELS", RUNS_DIR / "user"))
USER_PREFIX = "user:"
USER_ABOUT = "trained in the page"

BASE_MODEL = dict(family="decoder", vocab_size=2048, context_length=128, n_layer=4, d_model=128, n_heads=4,
                  n_kv_heads=4, d_ff=512, position="rope", norm="layernorm", mlp="gelu")
BASE_TRAIN = dict(data="shakespeare", steps=900, batch_size=32, lr=3e-3, min_lr=3e-4, warmup=50, eval_every=100)

# Steps that fit the baseline's wall-clock budget on the 2-core CPU: measured alone, one training step
# costs about 3x the baseline's for RWKV and 4x for Mamba, whose selective scan is the sequential reference.
RECURRENT_STEPS = {"rwkv": 250, "mamba": 220}

LAB_CONTEXT = 512
LAB_TRAIN = dict(batch_size=BASE_TRAIN["batch_size"] * BASE_MODEL["context_length"] // LAB_CONTEXT)

# name -> what differs from the baseline, as config overrides
ZOO: dict[str, dict] = {
    "baseline": dict(about="decoder-only, MHA, RoPE (the reference point)", model={}, train={}),
    "gqa": dict(about="GQA: 2 K/V heads for 4 query heads", model=dict(n_kv_heads=2), train={}),
    "mqa": dict(about="MQA: 1 K/V head", model=dict(n_kv_heads=1), train={}),
    "sinusoidal": dict(about="sinusoidal positions (Vaswani 2017)", model=dict(position="sinusoidal"), train={}),
    "learned": dict(about="learned absolute positions (GPT-2)", model=dict(position="learned"), train={}),
    "alibi": dict(about="ALiBi score biases", model=dict(position="alibi"), train={}),
    "nope": dict(about="no position encoding (NoPE)", model=dict(position="none"), train={}),
    "prefix": dict(about="prefix decoder (GLM): bidirectional over a random prefix", model=dict(family="prefix"),
                   train={}),
    "encdec": dict(about="encoder-decoder (2 + 2 layers): a passage in, the next passage out",
                   model=dict(family="encdec", n_layer=2), train=dict(batch_size=16)),
    # recurrent models: same data and the baseline's wall-clock budget (they are slower per step on a CPU)
    "rwkv": dict(about="RWKV-5.2: linear-attention RNN, matrix state per head", recurrent=True,
                 model=dict(family="rwkv", position="none"), train=dict(steps=RECURRENT_STEPS["rwkv"], warmup=20)),
    "mamba": dict(about="Mamba-1: selective state space model", recurrent=True,
                  model=dict(family="mamba", position="none"), train=dict(steps=RECURRENT_STEPS["mamba"], warmup=20)),
    "induction": dict(about="synthetic: a random sequence repeated; induction heads", task=True,
                      model=dict(n_layer=2, context_length=64),
                      train=dict(data="task:induction", task_length=24, steps=600, eval_every=100)),
    "copy": dict(about="synthetic: copy a sequence after a separator; copy heads", task=True,
                 model=dict(n_layer=2, context_length=64),
                 train=dict(data="task:copy", task_length=24, steps=600, eval_every=100)),
    # cross-attention has no position encoding of its own: reversing needs absolute positions in both stacks
    "reverse": dict(about="synthetic encoder-decoder (learned positions): output the input reversed; "
                          "anti-diagonal cross-attention",
                    task=True, model=dict(family="encdec", n_layer=2, context_length=32, position="learned"),
                    train=dict(data="task:reverse", task_length=24, steps=600, eval_every=100)),
    # the KV-cache lab's architectures at a context long enough for a cache policy to drop what matters: the same
    # tokens per step as the baseline (8 x 512 = 32 x 128) and the same steps
    "lab-mha": dict(about="KV-cache lab: MHA at a 512-token context", lab=True,
                    model=dict(context_length=LAB_CONTEXT), train=LAB_TRAIN),
    "lab-gqa": dict(about="KV-cache lab: GQA (2 K/V heads) at a 512-token context", lab=True,
                    model=dict(context_length=LAB_CONTEXT, n_kv_heads=2), train=LAB_TRAIN),
    "lab-mqa": dict(about="KV-cache lab: MQA (1 K/V head) at a 512-token context", lab=True,
                    model=dict(context_length=LAB_CONTEXT, n_kv_heads=1), train=LAB_TRAIN),
    "lab-mla": dict(about="KV-cache lab: MLA (a latent of 64 and a RoPE key of 16) at a 512-token context", lab=True,
                    model=dict(context_length=LAB_CONTEXT, kv_lora_rank=64, qk_rope_dim=16), train=LAB_TRAIN),
}


# what each variant sets on the baseline's shape: n_kv_heads, and MLA's latent and RoPE key widths
VARIANT_FIELDS = {variant: variant_fields(variant, BASE_MODEL["n_heads"], BASE_MODEL["d_model"] // BASE_MODEL["n_heads"])
                  for variant in VARIANTS}


def _factors(family: str, variant: str, position: str) -> tuple[str, str, str]:
    """The choices that matter: RWKV and Mamba have neither K/V heads nor a position encoding."""
    return (family, "n/a", "n/a") if family in RECURRENT_FAMILIES else (family, variant, position)


def match(family: str, variant: str, position: str) -> tuple[str | None, str | None]:
    """The shipped text model with exactly these choices, else None and the nearest shipped one
    (None too when no text model is installed).

    Nearest: fewest differing choices among family, variant and position; ties go to the
    entry listed first (the baseline).
    """
    wanted = _factors(family, variant, position)
    shipped = [n for n in available() if not ZOO[n].get("task")]
    if not shipped:
        return None, None
    distance = {}
    for n in shipped:
        cfg = entry_configs(n)[0]
        distance[n] = sum(a != b for a, b in zip(_factors(cfg.family, cfg.variant, cfg.position), wanted))
    best = min(shipped, key=lambda n: distance[n])
    return (best if distance[best] == 0 else None), best


def untrained_config(family: str, variant: str, position: str) -> ModelConfig:
    """The baseline's shape with these choices, for an untrained (random weights) model."""
    if variant not in VARIANT_FIELDS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANT_FIELDS)}")
    if family in ("encdec", "rwkv", "mamba"):  # the zoo entry's shape
        return ModelConfig(**{**BASE_MODEL, **ZOO[family]["model"], **(
            {} if family in RECURRENT_FAMILIES else {"position": position, **VARIANT_FIELDS[variant]})})
    return ModelConfig(**{**BASE_MODEL, "family": family, "position": position, **VARIANT_FIELDS[variant]})


def lab_entries() -> list[str]:
    """The KV-cache lab's architecture models (MHA first), trained at a context long enough to compress."""
    return [name for name, entry in ZOO.items() if entry.get("lab")]


def entry_configs(name: str):
    """(ModelConfig, TrainConfig) of a zoo entry."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; shipped: {', '.join(ZOO)}")
    entry = ZOO[name]
    return ModelConfig(**{**BASE_MODEL, **entry["model"]}), TrainConfig(**{**BASE_TRAIN, **entry["train"]})


def available() -> list[str]:
    """Names of the zoo models present in models/ (finished: they have a card)."""
    return [name for name in ZOO if (MODELS_DIR / name / CARD).exists()]


def user_models() -> list[str]:
    """Models trained in the page, as 'user:<name>' (finished: they have a card)."""
    if not USER_DIR.is_dir():
        return []
    return sorted(USER_PREFIX + p.parent.name for p in USER_DIR.glob(f"*/{CARD}"))


def config_of(name: str) -> ModelConfig:
    """The config of a zoo entry or of a user model."""
    if name.startswith(USER_PREFIX):
        return ModelConfig.load(USER_DIR / name.removeprefix(USER_PREFIX) / "config.json")
    return entry_configs(name)[0]


def about(name: str) -> str:
    """What a model is, in English (the page's catalogue translates it as ``zoo.about.<name>``)."""
    return ZOO[name]["about"] if name in ZOO else USER_ABOUT


def is_task(name: str | None) -> bool:
    return bool(name) and name in ZOO and bool(ZOO[name].get("task"))


def load(name: str, **kwargs) -> LanguageModel:
    """A shipped model by name, or a user model 'user:<name>' (safetensors + JSON only; sha256 checked)."""
    if name.startswith(USER_PREFIX):
        folder = USER_DIR / name.removeprefix(USER_PREFIX)
        if not (folder / CARD).is_file():
            raise ValueError(f"user model {name!r} not found in {USER_DIR}")
        return load_model(folder, **kwargs)
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; shipped: {', '.join(ZOO)}")
    if not (MODELS_DIR / name / CARD).is_file():
        raise ValueError(f"zoo model {name!r} is not in {MODELS_DIR}; build it: python -m playground.train --zoo {name}")
    return load_model(MODELS_DIR / name, **kwargs)


def table() -> list[dict]:
    """One row per shipped model: what differs, size, validation, time, KV cache per token."""
    rows = []
    for name in available():
        card = read_card(MODELS_DIR / name)
        cfg = ModelConfig.load(MODELS_DIR / name / "config.json")
        fixed = cfg.family in RECURRENT_FAMILIES  # a fixed state, whatever the length
        if fixed:
            kind = "RWKV" if cfg.family == "rwkv" else "Mamba"
            kv = cfg.n_layer * state_bytes_per_layer(kind, cfg, "fp32")
        else:  # decoder layers hold the self-attention cache: K/V heads, or MLA's latent row
            heads, k_dim, v_dim = cache_shape(cfg)
            kv = cfg.n_layer * heads * (k_dim + v_dim) * 4
        rows.append({"name": name, "about": ZOO[name]["about"], "parameters": card.get("parameters"),
                     "val_bits_per_char": card.get("val_bits_per_char"),
                     "val_bits_per_char_4x": card.get("val_bits_per_char_4x"), "context": cfg.context_length,
                     "task_accuracy": (card.get("val") or {}).get("accuracy"),
                     "wall_time_s": card.get("wall_time_s"),
                     "kv_bytes_per_token_fp32": f"{kv:,} fixed" if fixed else f"{kv:,}",
                     "kv_bytes_fp32": kv, "state_fixed": fixed})
    return rows


def markdown_table(timings: dict[str, float] | None = None) -> str:
    """The README's zoo table, from the cards."""
    timings = timings or {}
    lines = ["| model | what differs | parameters | val bits/char @context | @4× context | steps | train time | "
             "steps × step time alone | KV bytes/token (fp32) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table():
        if r["val_bits_per_char"] is not None:
            score = f"{r['val_bits_per_char']:.3f} @{r['context']}"
            at_4x = f"{r['val_bits_per_char_4x']:.3f}" if r["val_bits_per_char_4x"] is not None else "n/a (learned)"
        else:
            score, at_4x = f"task accuracy {r['task_accuracy']:.1%}", ""
        steps = entry_configs(r["name"])[1].steps
        alone = f"{steps * timings[r['name']] / 60:.1f} min" if r["name"] in timings else ""
        lines.append(f"| `{r['name']}` | {r['about']} | {r['parameters']:,} | {score} | {at_4x} | {steps} | "
                     f"{r['wall_time_s'] / 60:.1f} min | {alone} | {r['kv_bytes_per_token_fp32']} |")
    return "\n".join(lines)
