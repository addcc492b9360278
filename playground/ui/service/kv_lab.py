"""The KV-cache lab for the page and ``/kvlab``: a zoo model, a text and the policies to compare, each with its knob,
in; every policy's run against the full cache out (``inspect.kv_lab``), computed on the analyze lane through the
GPU door."""
from __future__ import annotations

from dataclasses import dataclass

from playground import zoo
from playground.errors import check_int
from playground.inspect.kv_lab import PolicyRun, compare, lab_policies, lab_refusal
from playground.nn.kv_policies import Policy
from playground.ui import gpu
from playground.ui.i18n import Message, MessageError, msg
from playground.ui.lang import Words
from playground.ui.service.choices import PRETRAINED
from playground.ui.service.loading import load, prepare
from playground.ui.service.prompts import labels, tokenize
from playground.zoo import ModelSpec

MAX_LAB_TOKENS = 512


@dataclass
class LabResult:
    """The lab's runs (the full cache first) over one text, and what the figures label them with."""

    spec: ModelSpec
    runs: list[PolicyRun]
    labels: list[str]   # the text's tokens
    n_layer: int
    n_heads: int


def lab_models() -> list[str]:
    """The zoo models the lab reads: decoder-only, trained on text, keys that carry their positions (not ALiBi)."""
    return [f"zoo:{name}" for name in zoo.available()
            if not zoo.is_task(name) and lab_refusal(zoo.config_of(name)) is None]


def lab_reads(spec: ModelSpec) -> bool:
    """Whether the lab runs ``spec``: a zoo model of ``lab_models``, or a pretrained decoder-only model (a Hub id or
    an operator's folder) whose every layer is full attention with positions its keys carry (not ALiBi)."""
    if str(spec) in lab_models():
        return True
    return spec.scheme in PRETRAINED and lab_refusal(spec.config()) is None


def lab_defaults() -> tuple[str | None, list[str]]:
    """The lab's model as it opens (the 512-context MHA model where it is installed, else the first the lab reads)
    and the architectures it compares with by default (the other lab models that are MQA or MLA)."""
    models, lab = lab_models(), [f"zoo:{n}" for n in zoo.lab_entries()]
    shipped = [m for m in lab if m in models]
    first = shipped[0] if shipped else (models[0] if models else None)
    others = [m for m in shipped[1:] if ModelSpec.parse(m).config().variant in ("MQA", "MLA")]
    return first, others


def architecture_name(spec: ModelSpec) -> str:
    """What the lab calls another architecture's full cache: its variant and its spec ("MLA · zoo:lab-mla")."""
    return f"{spec.config().variant} · {spec}"


def _lab_on_device(spec: ModelSpec, ids: list[int], policies: list[Policy], architectures: list[ModelSpec],
                   device: str = "cpu", progress=None, cancelled=None) -> list[PolicyRun]:
    """The model work of ``run_lab``, through the GPU door."""
    others = {architecture_name(a): load(a, device=device).model for a in architectures}
    return compare(load(spec, device=device).model, ids, policies, progress=progress, cancelled=cancelled,
                   others=others)


def run_lab(spec: ModelSpec, text: str, kinds: list[str], *, architectures: list[str] = (), tokens: int = 128,
            budget: float = 0.25, sinks: int = 4, recent: float = 0.5, window: int = 8, sweep: bool = False,
            device: str = "cpu", lang: str = "en", progress=None, cancelled=None) -> tuple[LabResult, list[Message]]:
    """The first ``tokens`` tokens of ``text`` under the full cache and each chosen policy (``lab_policies``), then
    through each of ``architectures`` (other lab models, e.g. 'zoo:lab-mla') with its own full cache. ``sweep``: each
    evicting policy at half, the chosen and twice the chosen budget.
    ``progress(done, total)`` counts the steps of every run; ``cancelled()`` stops it between steps."""
    others = [ModelSpec.parse(a) for a in architectures]
    for s in (spec, *others):
        if not lab_reads(s):
            raise MessageError("error.kvlab_model", spec=str(s), models=", ".join(lab_models()))
    others = [a for a in dict.fromkeys(others) if a != spec]  # the model itself is the full cache already
    cfg = spec.config()
    most = min(MAX_LAB_TOKENS, cfg.context_length if cfg.position == "learned" else MAX_LAB_TOKENS)
    tokens = check_int("tokens", tokens, 8, most)
    ids, notes = tokenize(spec, text, device)
    if len(ids) < 8:
        raise MessageError("error.kvlab_short", n=len(ids))
    if len(ids) > tokens:
        notes = [*notes, msg("note.kvlab_cut", n=tokens, total=len(ids))]
        ids = ids[:tokens]
    policies = lab_policies(kinds, len(ids), budget, sinks, recent, window, sweep=bool(sweep)) if kinds or not others \
        else []
    for s in (spec, *others):
        prepare(s, device)
    runs = gpu.work(Words(lang=lang), _lab_on_device, spec, ids, policies, others, device=device,
                    **gpu.watch(progress, cancelled))
    return LabResult(spec, runs, labels(spec, ids), cfg.n_layer, cfg.n_heads), notes
