"""Bad input, said once: a ``ValueError`` that carries a code and its parameters.

The library raises ``InputError(code, **params)``; its ``str`` is the English sentence from
``MESSAGES``, so a notebook or a traceback reads English. The page renders the same code in the
reader's language from its catalogue (``ui.i18n``), whose English entries are these.
``check_int`` and ``check_float`` are the one range check every entry point uses.
"""
from __future__ import annotations

MESSAGES: dict[str, str] = {
    "error.positive_int": "{name} must be a positive integer, got {value!r}",
    "error.heads_divisible": "n_heads={n_heads} must be divisible by n_kv_heads={n_kv_heads}",
    "error.int_range": "{name} must be an integer from {low} to {high}, got {value!r}",
    "error.int_min": "{name} must be an integer of at least {low}, got {value!r}",
    "error.float_range": "{name} must be a number from {low} to {high}, got {value!r}",
    "error.spec_syntax": "A model spec is 'source:name' (zoo:gqa, user:my-model, untrained:decoder/GQA/alibi), "
                         "got {spec!r}; sources: {schemes}",
    "error.spec_scheme": "Unknown model source {scheme!r} in {spec!r}; valid sources: {schemes}",
    "error.spec_hf": "A Hub model is 'hf:owner/name' (e.g. hf:openai-community/gpt2), got {name!r}",
    "error.spec_local": "A local model is 'local:<folder name>' (one folder in the operator's model directory), "
                        "got {name!r}",
    "error.spec_zoo": "No zoo model is named {name!r}; the zoo has: {names}",
    "error.spec_user": "A model trained in the page is named with letters, digits, '-' or '_' "
                       "(up to 41 characters), got {name!r}",
    "error.spec_user_missing": "No model named {name!r} was trained in the page; trained here: {names}",
    "error.spec_untrained": "An untrained model is 'untrained:family/variant/position' "
                            "(untrained:decoder/GQA/alibi; RWKV and Mamba: untrained:rwkv), got {name!r}",
    "error.spec_family": "Unknown architecture {family!r}; valid: {valid}",
    "error.spec_variant": "Unknown attention variant {variant!r}; valid: {valid}",
    "error.spec_position": "Unknown position encoding {position!r}; valid: {valid}",
    "error.step_family": "Stepping through a head needs a Transformer (decoder, prefix or encoder-decoder); "
                         "family {family!r} has no attention heads",
    "error.step_kind": "This model has no {kind!r} attention; it has: {kinds}",
    "error.step_mla": "Stepping through a head follows x W_Q, x W_K and x W_V; an MLA model rebuilds every head's keys "
                      "and values from one latent per token, which these steps do not show. Its weights are in the "
                      "Attention tab, and its cache in the KV-cache lab",
    "error.step_layer": "Layer {value!r} does not exist: the layers are 0 to {last}",
    "error.step_head": "Head {value!r} does not exist: the heads are 0 to {last}",
    "error.step_query": "Query token {value!r} does not exist: the tokens are 0 to {last}",
    "error.step_ids": "Give at least one token to step through",
    "error.step_source": "An encoder-decoder needs the encoder's tokens (source_ids) as well",
    "error.model_too_large": "{name} needs about {size_mb:,} MB of memory, more than this server's budget for "
                             "loaded models ({budget_mb:,} MB); the operator can raise it with the environment "
                             "variable {env} (in GB)",
    "error.analysis_too_large": "Analyzing {name} needs about {size_mb:,} MB of memory, more than this server's "
                                "budget for analyses ({budget_mb:,} MB); shorten the prompt, or the operator can "
                                "raise it with the environment variable {env} (in GB)",
    "error.model_too_large_device": "{name} needs about {size_mb:,} MB on {device}, which has {free_mb:,} MB free "
                                    "even with the other models there unloaded; pick a smaller model or dtype, or "
                                    "run it on the CPU",
    "error.memory_budget": "The environment variable {env} is a memory budget in GB, a positive number; "
                           "got {value!r}",
    "error.lane_full": "This server's {lane} lane is full: {running} jobs are running and {waiting} are waiting, as many as it holds, so that no one waits without end. Try again in a minute; views of an analysis already made still answer.",
    "error.lane_cancelled": "Cancelled while waiting for a worker in the {lane} lane: nothing ran.",
    "error.kvlab_policies": "Pick at least one cache policy of: {valid} (got {given})",
    "error.positive_env": "The environment variable {env} must be a positive number, got {value!r}",
    "error.memory_full": "{what} needs about {size_mb:,} MB of memory, and this server holds {held_mb:,} MB of its "
                         "{limit_mb:,} MB with every stored entry it could free let go; try again in a moment, or "
                         "with a shorter prompt or a smaller model (the operator sets the limit with the "
                         "environment variable {env}, in GB)",
    "error.out_of_memory_at": "Out of {where} memory at {tokens:,} tokens; try fewer tokens or bf16",
    "error.out_of_memory": "Out of {where} memory; try fewer tokens or bf16",
    "error.cache_dtype": "cache dtype {dtype!r} is not one of: {valid}",
    "error.config_object": "A config.json is a JSON object of fields ({{...}}), got a {kind}",
    "error.config_missing": "config.json has no {field}, needed for {needed_for}",
    "error.config_head_dim": "config.json: hidden_size={hidden} is not divisible by num_attention_heads={n_heads}; "
                             "a config like this names head_dim",
    "error.config_layer_list": "config.json: {field} must list the layers, got {value!r}",
    "error.config_layer_count": "config.json: {field} lists {listed} layers but the model has {layers}",
    "error.config_layer_type": "config.json: {field} has a layer type {value!r} this calculator does not know; "
                               "known: {known}",
    "error.config_unread": "model_type {model_type!r} lays out its layers in a way this calculator does not read "
                           "(its cache would be miscounted)",
}


class InputError(ValueError):
    """A ValueError with a message code (a key of ``MESSAGES`` or of the page's catalogue) and parameters."""

    def __init__(self, code: str, **params):
        self.code, self.params = code, params
        super().__init__(self.english())

    def english(self) -> str:
        template = MESSAGES.get(self.code)
        return template.format(**self.params) if template else self.code


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high`` (no upper bound when ``high`` is None), else InputError."""
    try:
        number = int(value)
        whole = not isinstance(value, bool) and number == value
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or number < low or (high is not None and number > high):
        if high is None:
            raise InputError("error.int_min", name=name, value=value, low=low)
        raise InputError("error.int_range", name=name, value=value, low=low, high=high)
    return number


def check_float(name: str, value, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, else InputError."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if isinstance(value, bool) or not low <= number <= high:  # NaN fails the comparison
        raise InputError("error.float_range", name=name, value=value, low=low, high=high)
    return number
