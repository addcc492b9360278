"""Pretrained models as spec sources: ``hf:<owner/name>`` (the Hugging Face Hub) and ``local:<name>``
(a folder in the operator's directory, $PLAYGROUND_LOCAL_MODELS).

A spec names the model everywhere (page, API, share link, notebook), so a share link carries the Hub
id. A name is only ever a Hub id or one folder name: a visitor cannot point the server at a path.
Each name's folder is resolved once per process (``prepare``: the Hub's size check and download, with
progress for the page); its config and tokenizer are read from that folder once.
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path

import torch

from playground.errors import InputError
from playground.models.base import LanguageModel
from playground.models.pretrained import HubTokenizer, load_folder, shape_of
from playground.models.pretrained import hub
from playground.models.pretrained.budget import estimate_parameters, parameters_in_folder
from playground.models.pretrained.checkpoint import read_config

LOCAL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")  # one folder name, no '..'

FOLDERS: dict[tuple[str, str], Path] = {}  # the registry of prepared names: (scheme, name) -> its folder
_lock = threading.Lock()


def check_hf(name: str) -> str:
    if not hub.is_hub_id(name):
        raise InputError("error.spec_hf", name=name)
    return name


def check_local(name: str) -> str:
    if not LOCAL_NAME.match(name) or ".." in name:
        raise InputError("error.spec_local", name=name)
    return name


def prepare(scheme: str, name: str, progress: hub.Progress | None = None) -> Path:
    """The folder of ``hf:`` or ``local:`` ``name``: for a Hub id, checked against the memory budget and
    downloaded (config, safetensors, tokenizer) on first use; HubError (a ValueError) saying why not."""
    key = (scheme, name)
    with _lock:
        if key in FOLDERS:
            return FOLDERS[key]
    if scheme == "hf":
        folder = hub.resolve(name, progress=progress, forget=_forget, token=hub.server_token(name))
    else:
        folder = hub.local_folder(name)
    with _lock:
        FOLDERS[key] = folder
    return folder


def _forget(repo: str) -> None:
    """A repository deleted from the Hugging Face cache to make room: found and downloaded again on its next use
    (a model already loaded keeps its weights, config and tokenizer in memory)."""
    with _lock:
        FOLDERS.pop(("hf", repo), None)


def is_prepared(scheme: str, name: str) -> bool:
    """True once ``prepare`` has found this name's folder: its config and tokenizer read without a download."""
    with _lock:
        return (scheme, name) in FOLDERS


def local_names() -> list[str]:
    """The model folders (holding a config.json) in the operator's directory; [] when local folders are off."""
    try:
        root = hub.local_root()
    except hub.HubError:
        return []
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file() and LOCAL_NAME.match(p.name))


@lru_cache(maxsize=64)
def _config(scheme: str, name: str):
    """Mamba's ``ModelConfig``, or any other architecture's ``HubConfig``."""
    return shape_of(read_config(prepare(scheme, name)))


@lru_cache(maxsize=16)
def _tokenizer(scheme: str, name: str) -> HubTokenizer:
    return HubTokenizer.from_folder(prepare(scheme, name))


@lru_cache(maxsize=64)
def summary(scheme: str, name: str) -> dict:
    """What the page says about a prepared model beside its shape: {model_type, parameters} (the
    parameters stored in its safetensors headers, else counted from its config)."""
    folder = prepare(scheme, name)
    hf = read_config(folder)
    return {"model_type": str(hf.get("model_type")),
            "parameters": parameters_in_folder(folder) or estimate_parameters(hf)}


def _load(scheme: str, name: str) -> LanguageModel:
    model, _ = load_folder(prepare(scheme, name), "cpu", torch.float32)
    return model


def hooks(scheme: str) -> dict:
    """The ``Scheme`` callables of ``hf`` or ``local``."""
    return dict(check=check_hf if scheme == "hf" else check_local,
                config=lambda name: _config(scheme, name), load=lambda name: _load(scheme, name),
                tokenizer=lambda name: _tokenizer(scheme, name))
