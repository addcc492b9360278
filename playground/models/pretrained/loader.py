"""A Hugging Face checkpoint folder -> a playground model and its tokenizer.

``load_folder`` reads config.json, picks the family by ``model_type``, turns the config into a
``ModelConfig``, refuses absurd sizes before allocating anything, builds the model on the meta
device (no memory), takes every tensor from the safetensors files through the family's weight map
(each cast to the chosen dtype as it is read), loads them with ``load_state_dict(assign=True,
strict=True)``, refuses tensors nobody took, and returns the model in eval mode. Any failure is a
``ValueError`` saying what is wrong, raised with nothing of the half-built model still referenced.
"""
from __future__ import annotations

from pathlib import Path

import torch

from playground.config import ModelConfig
from playground.models import build_model
from playground.models.base import LanguageModel
from playground.models.pretrained.checkpoint import Checkpoint, read_config
from playground.models.pretrained.families import family_for
from playground.models.pretrained.opening import handwritten, model_config
from playground.models.pretrained.tokenizer import HubTokenizer
from playground.nn.kernels import TORCH_DTYPES, run_dtype



def resolve_dtype(dtype: torch.dtype | str | None, device: str | torch.device) -> torch.dtype:
    """None: float32 on the CPU, bfloat16 (or float16) on CUDA; a name or a floating torch dtype otherwise."""
    if dtype is None:
        return run_dtype("auto", device)
    if isinstance(dtype, str):
        if dtype not in TORCH_DTYPES and dtype != "auto":
            raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(TORCH_DTYPES)}")
        return run_dtype(dtype, device)
    if dtype not in TORCH_DTYPES.values():
        raise ValueError(f"dtype must be one of {', '.join(TORCH_DTYPES)}, got {dtype}")
    return dtype


def config_of(folder: str | Path) -> tuple[dict, ModelConfig]:
    """(config.json as a dict, our ModelConfig for it), checked against ``LIMITS``; reads no weights."""
    hf = read_config(folder)
    return hf, model_config(hf)


def _build(folder: Path, device: torch.device, dtype: torch.dtype) -> tuple[LanguageModel, HubTokenizer]:
    hf, cfg = config_of(folder)
    family = family_for(hf["model_type"])
    tokenizer = HubTokenizer.from_folder(folder)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"tokenizer.json has {tokenizer.vocab_size:,} tokens, more than the model's "
                         f"vocab_size={cfg.vocab_size:,}: they do not belong together")
    with Checkpoint(folder, dtype=dtype) as ckpt:
        state = family.state_dict(cfg, hf, ckpt)
        ckpt.check_all_used()
    with torch.device("meta"):
        model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ValueError(f"the tensors of {folder} do not fit the model config.json describes: {e}") from None
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight  # assign=True gave each name its own Parameter
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"no weights were loaded for {left[:5]}")
    return model.to(device).eval(), tokenizer


def load_folder(folder: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype | str | None = None) -> tuple[LanguageModel, HubTokenizer]:
    """A model and its tokenizer from a Hugging Face checkpoint folder: a hand-written family (Mamba) into the
    playground's own module, any other architecture through transformers' class (``models.hf.open_folder``).

    Args:
        folder: holds config.json, model.safetensors (or model.safetensors.index.json and its shards)
            and tokenizer.json (tokenizer_config.json optional).
        device: where the model runs. dtype: float32 / bfloat16 / float16, a name of one, or None
            (float32 on the CPU, bfloat16 on CUDA).
    Returns:
        (model, tokenizer): ``model(ids).logits`` is (B, T, V); capture, ``setup_cache``, ``analyze`` and
        ``generate`` work as on any playground model.
    Raises:
        ValueError: the folder, config, tokenizer or tensors are missing, malformed or unsupported.
    """
    device = torch.device(device)
    dtype = resolve_dtype(dtype, device)
    if not handwritten(read_config(folder)):
        from playground.models.hf.loader import open_folder

        return open_folder(folder, device, dtype)
    try:
        return _build(Path(folder), device, dtype)
    except ValueError as e:
        error = e
    error.__context__ = error.__cause__ = None
    # Raised outside the except block and without its traceback, whose frames hold the half-built model
    # and its tensors: once this function returns, nothing of them is referenced.
    raise error.with_traceback(None)
