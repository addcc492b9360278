"""One string names a model everywhere: the page, its API, a share link and a notebook.

    zoo:gqa                        a shipped model (``models/gqa``)
    user:my-model                  a model trained in the page (``zoo.USER_DIR/my-model``)
    untrained:decoder/GQA/alibi    random weights of that shape: family/variant/position
    untrained:rwkv                 RWKV and Mamba have no variant or position to choose
    hf:openai-community/gpt2       a pretrained model from the Hugging Face Hub (``zoo.hub_source``)
    local:my-gpt2                  a pretrained model folder in the operator's $PLAYGROUND_LOCAL_MODELS

``ModelSpec.parse(text)`` checks a spec against the tables it names (families, variants, positions,
zoo entries) and raises ``InputError`` saying what is valid; ``str(spec)`` gives the text back.
Each source is one ``Scheme`` in ``SCHEMES``: how its names are checked, configured and loaded.
Another source of models is one more entry there.

    from playground.zoo.spec import ModelSpec, load
    model = load("zoo:gqa")                      # or ModelSpec.parse("zoo:gqa").load()
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

from playground.config import FAMILIES, POSITIONS, RECURRENT_FAMILIES, ModelConfig
from playground.errors import InputError
from playground.models import build_model
from playground.models.base import LanguageModel
from playground.models.checkpoint import CARD, load_model
from playground.train.tokenizer import Tokenizer
from playground.zoo import hub_source, registry

UNTRAINED_SEED = 0  # every untrained spec builds the same random weights
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$")  # also a safe folder name


@lru_cache(maxsize=1)
def _shipped() -> Tokenizer:
    return Tokenizer.load()


def shipped_tokenizer(name: str = "") -> Tokenizer:
    """The tokenizer every zoo, page-trained and untrained model reads (``models/tokenizer``), loaded once."""
    return _shipped()


@dataclass(frozen=True)
class Scheme:
    """How the models of one source are named, configured, loaded and tokenized."""

    check: Callable[[str], str]                  # the name after the colon -> its canonical form, or InputError
    config: Callable[[str], ModelConfig]         # a checked name -> its config, without loading weights
    load: Callable[[str], LanguageModel]         # a checked name -> the model, weights loaded, on the CPU
    trained: bool = True                         # False: random weights (the page marks them UNTRAINED)
    tokenizer: Callable[[str], Tokenizer] = shipped_tokenizer  # a checked name -> its tokenizer (encode, decode, labels)


# ----------------------------------------------------------------------------- zoo:<name>

def _check_zoo(name: str) -> str:
    if name not in registry.ZOO:
        raise InputError("error.spec_zoo", name=name, names=", ".join(registry.ZOO))
    return name


# ----------------------------------------------------------------------------- user:<name>

def _check_user(name: str) -> str:
    if not USER_NAME.match(name):
        raise InputError("error.spec_user", name=name)
    return name


def _user_folder(name: str):
    folder = registry.USER_DIR / name
    if not (folder / CARD).is_file():  # a card: training finished
        trained = [m.removeprefix(registry.USER_PREFIX) for m in registry.user_models()]
        raise InputError("error.spec_user_missing", name=name, names=", ".join(trained) or "none")
    return folder


# ----------------------------------------------------------------------------- untrained:<family/variant/position>

def untrained_name(family: str, variant: str = "MHA", position: str = "rope") -> str:
    """The canonical name of an untrained shape: 'decoder/GQA/alibi', or just 'rwkv' / 'mamba'."""
    return family if family in RECURRENT_FAMILIES else f"{family}/{variant}/{position}"


def _check_untrained(name: str) -> str:
    parts = name.split("/")
    family = parts[0]
    if family not in FAMILIES:
        raise InputError("error.spec_family", family=family, valid=", ".join(FAMILIES))
    if len(parts) != (1 if family in RECURRENT_FAMILIES else 3):
        raise InputError("error.spec_untrained", name=name)
    if family in RECURRENT_FAMILIES:
        return family
    _, variant, position = parts
    if variant not in registry.VARIANT_FIELDS:
        raise InputError("error.spec_variant", variant=variant, valid=", ".join(registry.VARIANT_FIELDS))
    if position not in POSITIONS:
        raise InputError("error.spec_position", position=position, valid=", ".join(POSITIONS))
    return name


def _untrained_config(name: str) -> ModelConfig:
    family, *shape = name.split("/")
    return registry.untrained_config(family, *(shape or ("MHA", "none")))


def _untrained_model(name: str) -> LanguageModel:
    with torch.random.fork_rng(devices=[]):  # the same weights every time, the caller's RNG untouched
        torch.manual_seed(UNTRAINED_SEED)
        return build_model(_untrained_config(name)).eval()


SCHEMES: dict[str, Scheme] = {
    "zoo": Scheme(_check_zoo, lambda name: registry.entry_configs(name)[0], registry.load),
    "user": Scheme(_check_user, lambda name: ModelConfig.load(_user_folder(name) / "config.json"),
                   lambda name: load_model(_user_folder(name))),
    "untrained": Scheme(_check_untrained, _untrained_config, _untrained_model, trained=False),
    "hf": Scheme(**hub_source.hooks("hf")),
    "local": Scheme(**hub_source.hooks("local")),
}


@dataclass(frozen=True)
class ModelSpec:
    """A model by source and name; ``str(spec)`` is the spec text, ``ModelSpec.parse`` reads it back."""

    scheme: str
    name: str

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise InputError("error.spec_scheme", scheme=self.scheme, spec=str(self), schemes=", ".join(SCHEMES))
        SCHEMES[self.scheme].check(self.name)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """'zoo:gqa' -> ModelSpec('zoo', 'gqa'); InputError naming what is valid otherwise."""
        if isinstance(text, ModelSpec):
            return text
        spec = (text or "").strip() if isinstance(text, str) else ""
        scheme, colon, name = spec.partition(":")
        if not colon or not scheme or not name:
            raise InputError("error.spec_syntax", spec=text, schemes=", ".join(SCHEMES))
        if scheme not in SCHEMES:
            raise InputError("error.spec_scheme", scheme=scheme, spec=spec, schemes=", ".join(SCHEMES))
        return cls(scheme, SCHEMES[scheme].check(name))

    @classmethod
    def untrained(cls, family: str, variant: str = "MHA", position: str = "rope") -> "ModelSpec":
        return cls.parse(f"untrained:{untrained_name(family, variant, position)}")

    def __str__(self) -> str:
        return f"{self.scheme}:{self.name}"

    @property
    def trained(self) -> bool:
        return SCHEMES[self.scheme].trained

    @property
    def is_task(self) -> bool:
        """A zoo model trained on a synthetic task: it runs on its own task's sequences, not on text."""
        return self.scheme == "zoo" and registry.is_task(self.name)

    def config(self) -> ModelConfig:
        return SCHEMES[self.scheme].config(self.name)

    def tokenizer(self) -> Tokenizer:
        """The tokenizer of this model's source: text -> ids -> text, and a label per token."""
        return SCHEMES[self.scheme].tokenizer(self.name)

    def load(self, *, device: str = "cpu", **overrides) -> LanguageModel:
        """The model in eval mode; ``overrides`` replace config fields (backend, sliding_window)."""
        model = SCHEMES[self.scheme].load(self.name)
        if overrides:
            state = model.state_dict()
            model = build_model(model.cfg.replace(**overrides))
            model.load_state_dict(state)
        return model.to(device).eval()


def load(spec: ModelSpec | str, **kwargs) -> LanguageModel:
    """``load("zoo:gqa")``: a model by its spec (see ``ModelSpec.load`` for the options)."""
    return ModelSpec.parse(spec).load(**kwargs)
