"""The model zoo: shipped models that each change one factor from a baseline (``registry``), and how
they are built and timed (``build``), and the spec that names any model (``spec``):
``from playground import zoo; zoo.load("gqa")`` or ``zoo.load_spec("untrained:decoder/GQA/alibi")``."""
from playground.zoo.registry import (
    BASE_MODEL, BASE_TRAIN, MODELS_DIR, USER_ABOUT, USER_DIR, USER_PREFIX,
    VARIANT_FIELDS, ZOO,
    about, available, config_of, entry_configs, is_task, lab_entries, load, markdown_table, match, table, untrained_config,
    user_models,
)
from playground.zoo.spec import ModelSpec
from playground.zoo.spec import load as load_spec

__all__ = [
    "BASE_MODEL", "BASE_TRAIN", "MODELS_DIR", "USER_ABOUT", "USER_DIR", "USER_PREFIX",
    "VARIANT_FIELDS", "ZOO", "about", "available", "config_of", "entry_configs", "is_task", "lab_entries",
    "load", "markdown_table", "match", "table", "untrained_config", "user_models", "ModelSpec", "load_spec",
]
