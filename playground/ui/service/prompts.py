"""Prompts as token ids and labels, by each spec's own tokenizer, cut to what the model and the device take; the
seeded sequences of the synthetic-task models."""
from __future__ import annotations

from playground import zoo
from playground.config import ModelConfig
from playground.train import tasks
from playground.ui.i18n import Message, MessageError, msg
from playground.ui.service.choices import PRETRAINED
from playground.zoo import ModelSpec

# A prompt is cut at the model's own positions, and at what an analysis on this device reads in reasonable time:
# attention is kept as q, k and log-sum-exp (memory linear in T) and every view asks for tiles.
MAX_PROMPT_TOKENS = {"cpu": 8192, "cuda": 32768}
MAX_PROMPT_CHARS = 150_000  # longer text is cut before tokenizing (32,768 tokens are ~130,000 characters)


def token_limit(cfg: ModelConfig, device: str = "cpu", pretrained: bool = False) -> tuple[int, Message]:
    """The most prompt tokens an analysis takes for this model on this device, and why that many.

    A pretrained model stops at its own positions (GPT-2 1,024, SmolLM2 8,192, Qwen2.5 32,768), and so do
    learned positions; a shipped or trained model with RoPE, ALiBi, sinusoidal or no positions may run past its
    training length (the position lab's "train short, test long"), up to the page's limit on this device."""
    page = MAX_PROMPT_TOKENS.get(device, MAX_PROMPT_TOKENS["cpu"])
    if (pretrained or cfg.position == "learned") and cfg.context_length <= page:
        return cfg.context_length, msg("note.why_positions", n=cfg.context_length)
    return page, msg("note.why_page", n=page, device=device)


def tokenize(spec: ModelSpec, text: str, device: str = "cpu") -> tuple[list[int], list[Message]]:
    """Token ids of a prompt by the spec's tokenizer, cut to what the model can take, and notes saying what was cut."""
    cfg = spec.config()
    if not isinstance(text, str) or not text.strip():
        raise MessageError("error.prompt_empty")
    notes = []
    if len(text) > MAX_PROMPT_CHARS:
        notes.append(msg("note.chars_cut", chars=len(text), limit=MAX_PROMPT_CHARS))
        text = text[:MAX_PROMPT_CHARS]
    ids = spec.tokenizer().encode(text)
    limit, why = token_limit(cfg, device, spec.scheme in PRETRAINED)
    if len(ids) > limit:
        notes.append(msg("note.tokens_cut", tokens=len(ids), limit=limit, why=why))
        ids = ids[:limit]
    return ids, notes


def labels(spec: ModelSpec, ids: list[int]) -> list[str]:
    """A readable label per token, by the spec's tokenizer."""
    return spec.tokenizer().labels(ids)


def decode(spec: ModelSpec, ids: list[int]) -> str:
    return spec.tokenizer().decode(ids)


TASK_LABELS = {tasks.PAD_ID: "PAD", tasks.BOS_ID: "BOS", tasks.SEP_ID: "SEP", tasks.QUERY_ID: "QUERY"}


def task_labels(spec: ModelSpec, ids: list[int]) -> list[str]:
    """Labels of a synthetic-task sequence: its special ids by name, the rest by the spec's tokenizer."""
    return [TASK_LABELS.get(i) or label for i, label in zip(ids, labels(spec, ids))]


def task_sequence(name: str, seed: int = 0) -> tuple[list[int], list[int] | None, int]:
    """A seeded sequence of a synthetic-task model's own task: (input ids, decoder ids or None,
    how many leading ids form the prompt for generation)."""
    cfg, tcfg = zoo.entry_configs(name)
    task = tcfg.data.removeprefix("task:")
    n = tcfg.task_length
    if cfg.family == "encdec":
        src, tgt_in, _ = tasks.SEQ2SEQ_TASKS[task](1, n, cfg.vocab_size, seed)
        return src[0].tolist(), tgt_in[0].tolist(), n
    x, _, mask = tasks.TASKS[task](1, n, cfg.vocab_size, seed)
    ids = x[0].tolist()
    answer_from = int(mask[0].float().argmax())  # first scored position: everything before is the question
    return ids, None, answer_from + 1
