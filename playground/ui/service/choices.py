"""The page's model choices as sentences: the spec the three controls pick and why, what a model is, its shape,
the devices this machine offers."""
from __future__ import annotations

import torch

from playground import config, zoo
from playground.config import ModelConfig
from playground.errors import InputError
from playground.ui.i18n import Message, MessageError, msg
from playground.zoo import ModelSpec, hub_source

PRETRAINED = ("hf", "local")  # spec schemes of pretrained checkpoints (``zoo.hub_source``)


def about(name: str) -> Message:
    """What a zoo model (by name) or another model is, in the reader's language (``zoo.about`` is the English)."""
    return msg(f"zoo.about.{name}" if name in zoo.ZOO else "zoo.about.user")


def shape(cfg: ModelConfig) -> str:
    return cfg.family if cfg.family in config.RECURRENT_FAMILIES else f"{cfg.family} · {cfg.variant} · {cfg.position}"


def devices() -> list[str]:
    return (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]


def resolve(family: str, variant: str, position: str, *, task_model: str | None = None,
            fallback: str = "nearest") -> tuple[ModelSpec, Message]:
    """The page's model controls -> the spec of the model to run, and a sentence saying what was picked and why.

    ``task_model`` (a spec: a synthetic-task zoo model or a model trained in the page) wins over the
    three choices; otherwise the shipped model of that shape, else the nearest shipped one or an
    untrained model of exactly that shape (``fallback``).
    """
    if task_model:
        spec = ModelSpec.parse(task_model)
        try:
            cfg = spec.config()
        except InputError:
            raise
        except ValueError as e:
            raise MessageError("error.model_unreadable", name=str(spec), reason=str(e)) from None
        if spec.scheme in PRETRAINED:
            return spec, pretrained_sentence(spec, cfg)
        return spec, msg("choice.task", name=str(spec), shape=shape(cfg),
                         about=about(spec.name if spec.scheme == "zoo" else str(spec)))
    untrained = ModelSpec.untrained(family, variant, position)  # checks the three choices
    if variant == "MLA" and (family not in ("decoder", "prefix") or position != "rope"):
        raise MessageError("error.mla_shape", family=family, position=position)
    wanted = shape(untrained.config())
    exact, nearest = zoo.match(family, variant, position)
    if exact:
        spec = ModelSpec("zoo", exact)
        return spec, msg("choice.exact", name=exact, about=about(exact))
    if nearest is None:
        return untrained, msg("choice.none_installed", shape=wanted)
    if fallback == "untrained":
        return untrained, msg("choice.not_shipped_untrained", shape=wanted)
    return ModelSpec("zoo", nearest), msg("choice.nearest", shape=wanted, name=nearest,
                                          nearest_shape=shape(zoo.entry_configs(nearest)[0]))


def parameters(n: int) -> str:
    """A parameter count as the Hub writes it: '124.4M', '1.24B', '96.5k'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.{2 if unit == 'B' else 1}f}{unit}"
    return str(n)


def pretrained_sentence(spec: ModelSpec, cfg: ModelConfig) -> Message:
    """The model note of a pretrained model: its Hub id (or folder), size, family, attention layout and
    position encoding."""
    about_it = hub_source.summary(spec.scheme, spec.name)
    if cfg.family in config.RECURRENT_FAMILIES:
        layout = msg("choice.layout_recurrent", family=cfg.family)
    else:
        layout = msg("choice.layout", variant=cfg.variant, heads=cfg.n_heads, kv_heads=cfg.n_kv_heads,
                     position=msg(f"position.{cfg.position}"),
                     window=msg("choice.window", window=cfg.sliding_window) if cfg.sliding_window else "")
    return msg("choice.pretrained", name=str(spec), params=parameters(about_it["parameters"]),
               model_type=about_it["model_type"], layers=cfg.n_layer, layout=layout)
