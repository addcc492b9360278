"""Saving and loading models: safetensors for weights, JSON for the config and the card.

Nothing here unpickles: a checkpoint folder holds ``model.safetensors``, ``config.json`` and
optionally ``card.json`` (how it was trained, with the sha256 of the weights file). Every
problem (missing, truncated, pickled or mismatched file, wrong checksum) is a ``ValueError``
that names the file and says what is wrong.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from playground.config import ModelConfig
from playground.models.base import LanguageModel
from playground.models import build_model

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "card.json"
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")  # pickle 2-5, torch.save zip


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: LanguageModel, out_dir: str | Path, *, dtype: torch.dtype | None = None,
               card: dict | None = None) -> Path:
    """Write weights (optionally cast, e.g. to float16 to halve the size), config and card."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight")  # the same tensor as tok_emb.weight
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
             for k, v in state.items()}
    save_file(state, str(out / WEIGHTS))
    model.cfg.save(out / CONFIG)
    if card is not None:
        card = {**card, "weights_sha256": sha256_file(out / WEIGHTS)}
        (out / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return out


def read_card(model_dir: str | Path) -> dict:
    path = Path(model_dir) / CARD
    if not path.exists():
        return {}
    try:
        card = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(card, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return card


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; refuse anything else with a message naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file not found: {path}")
    try:
        return load_file(str(path))  # parses the header only: nothing in the file is executed
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(_PICKLE_MAGIC):  # say what it is, but never unpickle it
            raise ValueError(f"{path} is a pickle / torch.save file; only safetensors are loaded "
                             "(pickles can run code)") from None
        raise ValueError(f"{path} is not a valid safetensors file (corrupt or truncated?): {e}") from e


def load_model(model_dir: str | Path, *, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, verify: bool = True) -> LanguageModel:
    """Build the model a checkpoint folder describes and load its weights.

    With ``verify``, the weights' sha256 must equal the card's ``weights_sha256`` when a card exists.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ValueError(f"model folder not found: {folder}")
    cfg = ModelConfig.load(folder / CONFIG)
    card = read_card(folder)
    weights_path = folder / WEIGHTS
    if verify and card.get("weights_sha256") and weights_path.is_file():
        actual = sha256_file(weights_path)
        if actual != card["weights_sha256"]:
            raise ValueError(f"{weights_path} does not match its card: sha256 {actual[:12]}… "
                             f"expected {card['weights_sha256'][:12]}… (corrupt or replaced file)")
    state = load_weights(weights_path)
    model = build_model(cfg)
    expected = model.state_dict()
    if cfg.tie_embeddings:
        expected.pop("lm_head.weight")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not fit {folder / CONFIG}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{weights_path}: tensor {name} has shape {tuple(tensor.shape)}, "
                             f"the config needs {tuple(expected[name].shape)}")
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    return model.to(device=device, dtype=dtype).eval()
