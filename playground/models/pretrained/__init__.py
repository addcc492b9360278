"""Pretrained Hugging Face checkpoints: any architecture transformers runs through its attention interface
(``models.hf``: GPT-2, Llama, Qwen3, Gemma, BERT, T5, Marian, ...), and the playground's own module for Mamba.

    from playground import load_pretrained
    model, tok = load_pretrained("openai-community/gpt2")          # a Hub id, or a local folder
    ids = tok.encode("The cat sat on the mat")
    model(torch.tensor([ids])).logits                                # (1, T, 50257)

``hub.resolve`` turns the source into a folder (config.json first: an architecture the playground cannot open is
refused before a weight byte is fetched; then the size against a memory budget; then config, safetensors and
tokenizer files); ``loader.load_folder`` opens it: Mamba's tensors into the playground's own module
(``families/``), any other architecture through transformers' own class (``models.hf.loader.open_folder``). Weights are read only from safetensors: nothing is ever unpickled.
"""
from __future__ import annotations

from pathlib import Path

import torch

from playground.models.base import LanguageModel
from playground.models.pretrained.families import supported
from playground.models.pretrained.hub import HubError, Progress, fetch_config, resolve
from playground.models.pretrained.loader import load_folder, model_config, resolve_dtype
from playground.models.pretrained.opening import shape_of
from playground.models.pretrained.tokenizer import HubTokenizer


def load_pretrained(source: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
                    *, progress: Progress | None = None, token: str | None = None, revision: str | None = None,
                    allow_local: bool = True) -> tuple[LanguageModel, HubTokenizer]:
    """A pretrained model and its tokenizer, from a Hub id (``"Qwen/Qwen2.5-0.5B"``) or a local folder.

    Args:
        source: ``owner/name`` on the Hub, or a folder with config.json, *.safetensors and tokenizer.json.
        device: where the model runs. dtype: float32 / bfloat16 / float16 (a name or a torch dtype), or None:
            float32 on the CPU, bfloat16 on CUDA. The size at this dtype is checked before downloading, against
            the memory budget and, on CUDA, the device's free memory.
        progress: ``progress(fraction, text)`` while downloading. token, revision: for the Hub.
        allow_local: read any local folder (a notebook's own files); a server passes False, and then only
            folders inside $PLAYGROUND_LOCAL_MODELS are read.
    Returns:
        (model, tokenizer): ``model(ids).logits`` (B, T, V), capture, cache, ``analyze``, ``generate``;
        ``tokenizer.encode``, ``decode``, ``labels``.
    Raises:
        ValueError: HubError for the source (offline, unknown id, gated, too large, local folders off), or
            the loader's message for a folder it cannot read.
    """
    run = resolve_dtype(dtype, torch.device(device))
    folder = resolve(str(source), dtype=run, progress=progress, token=token, revision=revision,
                     allow_local=allow_local, device=device)
    return load_folder(folder, device, run)


__all__ = ["HubError", "HubTokenizer", "fetch_config", "load_folder", "load_pretrained", "model_config",
           "resolve", "shape_of", "supported"]
