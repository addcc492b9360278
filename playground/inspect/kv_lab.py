"""The KV-cache lab: one text through a model with its cache under each ``nn.kv_policies.Policy``, side by side.

Every policy reads the same token ids one at a time, teacher-forced (the text's own next token is fed, whatever
the model predicted), so each step's cache is what decoding with that policy would hold, and its next-token
distribution is compared with the full cache's at the same step:

- ``bytes``: what the caches of every layer hold after the step (their tensors' ``nbytes``, as allocated);
- ``nll``: the negative log-likelihood of the text's next token; the lab reports its increase over the full cache;
- ``kl``: KL(full ‖ policy) of the next-token distributions, in nats;
- ``agree``: whether the two distributions' most likely tokens are the same;
- ``kept``: per layer, the positions the cache held when the step attended (before the step's eviction), for the
  map of kept and dropped keys.

The keys' positions do not enter attention once cached (RoPE rotates a key before it is cached; learned and
sinusoidal positions are added to the input), which is what lets a cache keep any subset. ALiBi scores a key by its
distance, which a subset would have to carry: an ALiBi model is refused (``ValueError``).

Glossary: T tokens, L layers, V vocabulary.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from playground.inspect.analysis import Cancelled
from playground.errors import InputError, check_float, check_int
from playground.models.base import LanguageModel
from playground.models.hf.model import HubModel
from playground.models.hf.shape import HubConfig
from playground.models.hf.policy_cache import policy_cache
from playground.nn.kv_policies import Policy, PolicyCache, formula_bytes

FULL = Policy("full")
LAB_POLICIES = ("window", "sinks", "h2o", "snapkv", "int8", "int4")  # what the lab offers, in this order
LAB_DEFAULT = ("sinks", "h2o", "int4")  # with MQA's and MLA's own full caches (``compare``'s others): five runs


EVICTING = ("window", "sinks", "h2o", "snapkv")  # the policies whose knob is a budget of positions


def lab_policies(kinds: list[str], tokens: int, budget: float = 0.25, sinks: int = 4, recent: float = 0.5,
                 window: int = 8, sweep: bool = False) -> list[Policy]:
    """The lab's knobs as policies, in ``LAB_POLICIES`` order. ``budget``: the share of the text's ``tokens`` an
    evicting cache keeps; ``sinks``: StreamingLLM's; ``recent``: H2O's share of its budget kept for the latest
    tokens; ``window``: SnapKV's observation window (it compresses once half the text has been read). ``sweep``: each
    evicting policy at half, the chosen and twice the chosen budget (a curve of bytes against loss each)."""
    unknown = [k for k in kinds if k not in LAB_POLICIES]
    if unknown or not kinds:
        raise InputError("error.kvlab_policies", given=", ".join(unknown) or "—", valid=", ".join(LAB_POLICIES))
    budget = check_float("budget", budget, 0.01, 1.0)
    budgets = (budget / 2, budget, min(1.0, 2 * budget)) if sweep else (budget,)
    recent = check_float("recent", recent, 0.0, 1.0)

    def make(kind: str, share: float) -> Policy:
        kept = max(2, round(share * tokens))
        if kind == "window":
            return Policy("window", kept)
        if kind == "sinks":
            return Policy("sinks", kept, sinks=check_int("sinks", sinks, 0, kept - 1))
        if kind == "h2o":
            return Policy("h2o", kept, recent=max(1, round(recent * kept)))
        return Policy("snapkv", kept, recent=check_int("window", window, 1, kept), prompt=max(window, tokens // 2))

    out = []
    for kind in (k for k in LAB_POLICIES if k in kinds):
        if kind in EVICTING:
            out += [make(kind, share) for share in budgets]
        else:
            out.append(Policy("quant", bits=8 if kind == "int8" else 4))
    return list(dict.fromkeys(out))  # a sweep past the whole text repeats a budget


@dataclass
class PolicyRun:
    """One policy's run over the text: per step (T - 1 next tokens), and the kept positions per step and layer."""

    policy: Policy
    bytes: np.ndarray                    # (T - 1,) int64: the caches' bytes after each step
    nll: np.ndarray                      # (T - 1,) the next token's negative log-likelihood, nats
    kl: np.ndarray                       # (T - 1,) KL(full || policy), nats (0 for the full cache itself)
    agree: np.ndarray                    # (T - 1,) bool: the same most likely next token as the full cache
    kept: list[list[np.ndarray]] = field(repr=False, default_factory=list)  # [step][layer] positions attended
    weights: list[np.ndarray] = field(repr=False, default_factory=list)  # full cache only: [step] (L, nh, t + 1)
    name: str = ""                       # what the figures call it: the policy's label, or another architecture's
    shape: tuple[int, int, int] = (0, 0, 0)  # per layer and position (nn.cache.cache_shape) of the model that ran
    n_layer: int = 0

    def __post_init__(self):
        self.name = self.name or self.policy.label

    @property
    def family(self) -> str:
        """What the bytes-against-loss chart joins into one curve: a policy's kind (each knob setting a point; int8
        and int4 together), or another architecture's name (the full cache itself: "full")."""
        return self.name if self.policy.kind == "full" else self.policy.kind

    def formula(self, held: int) -> int:
        """Every layer's cache under this run's policy once ``held`` positions have been read, by formula."""
        return self.n_layer * formula_bytes(self.policy, held, self.shape)

    def summary(self, full: "PolicyRun") -> dict:
        """The run in four numbers beside the full cache's: mean bytes held, the mean NLL increase, mean KL and
        the share of steps whose top token agrees."""
        return {"policy": self.name, "family": self.family, "bytes": float(self.bytes.mean()),
                "bytes_share": float(self.bytes.mean() / full.bytes.mean()),
                "nll_increase": float((self.nll - full.nll).mean()), "kl": float(self.kl.mean()),
                "top1_agreement": float(self.agree.mean())}


def lab_refusal(cfg) -> str | None:
    """Why the lab cannot read a model of this config (a playground ``ModelConfig`` or a Hub ``HubConfig``), or None:
    it reads decoder-only models whose every layer is full attention and whose keys carry their positions."""
    if isinstance(cfg, HubConfig):
        if cfg.task != "causal" or cfg.attention_layers != cfg.n_layer or cfg.own_window:
            return (f"the KV-cache lab reads decoder-only Hub models whose every layer is full attention; "
                    f"{cfg.model_type!r} is not one")
    elif cfg.family != "decoder":
        return f"the KV-cache lab reads decoder-only models; this one is {cfg.family!r}"
    if cfg.position == "alibi":
        return ("ALiBi scores each key by its distance, which a cache keeping a subset of keys would have to carry: "
                "the KV-cache lab runs models with RoPE, learned, sinusoidal or no positions")
    return None


def _check(model: LanguageModel) -> None:
    reason = lab_refusal(model.cfg)
    if reason:
        raise ValueError(reason)


@contextmanager
def policy_caches(model: LanguageModel, policy: Policy) -> Iterator[list[PolicyCache]]:
    """Inside this block every attention layer of ``model`` keeps its keys and values under ``policy``: the
    playground's layers in a ``PolicyCache`` each (MLA: its latent rows), a Hub model in transformers' own cache
    made of ``PolicyLayer``s. Yields the caches, in layer order."""
    _check(model)
    dtype = next(model.parameters()).dtype
    if isinstance(model, HubModel):
        cfg = model.cfg
        cache = policy_cache(model.config, policy, cfg.n_kv_heads, cfg.head_dim, dtype)
        model.setup_cache()
        model.past = cache
        try:
            yield [layer.held for layer in cache.layers]
        finally:
            model.clear_cache()
        return
    layers = [block.self_attn for block in model.decoder.blocks]
    caches = []
    for a in layers:
        n_kv, k_dim, v_dim = a.cache_shape  # MLA: one row of latent and RoPE key per position
        caches.append(PolicyCache(policy, n_kv, k_dim, dtype, v_dim=v_dim))
    for attn, cache in zip(layers, caches):
        attn.cache = cache
    try:
        yield caches
    finally:
        for attn in layers:
            attn.cache = None


@torch.no_grad()
def run_policy(model: LanguageModel, ids: list[int], policy: Policy, full_logprobs: torch.Tensor | None = None,
               progress=None, cancelled=None, name: str = "") -> tuple[PolicyRun, torch.Tensor]:
    """``ids`` through ``model`` one token at a time with every layer's cache under ``policy``: the run, and the
    log-probabilities of each step's next token distribution (T - 1, V). ``full_logprobs``: the full cache's, to
    compare with (None: this is the full cache, whose every step's weights the run keeps for the kept-keys map).
    ``progress(done, steps)`` hears of each step; ``cancelled()`` returning True stops it (``Cancelled``). ``name``:
    what the figures call the run (default: the policy's label; another architecture's full cache: its name)."""
    _check(model)
    model.eval()
    if len(ids) < 2:
        raise ValueError("the KV-cache lab needs a text of at least two tokens")
    if model.cfg.position == "learned" and len(ids) > model.cfg.context_length:
        raise ValueError(f"learned positions end at {model.cfg.context_length}; the text has {len(ids)} tokens")
    x = torch.tensor(ids, device=next(model.parameters()).device)[None]
    steps, logprobs, kept, weights = len(ids) - 1, [], [], []
    nbytes = np.zeros(steps, dtype=np.int64)
    with policy_caches(model, policy) as caches:
        shape = (caches[0].k.shape[1], caches[0].k.shape[-1], caches[0].v.shape[-1])
        for t in range(steps):
            kept.append([c.pos.numpy().copy() for c in caches])
            if cancelled is not None and cancelled():
                raise Cancelled(f"stopped after {t} of {steps} tokens ({policy.label})")
            out = model(x[:, t:t + 1], start_pos=t, capture=True)
            step = []
            for rec, cache in zip([r for r in out.attentions if r.kind == "self"], caches):  # what H2O, SnapKV read
                src = rec.source
                k = src.k.float().repeat_interleave(src.n_heads // src.n_kv_heads, dim=1)  # (1, nh, Tk, hs)
                scores = src.q.float() @ k.transpose(-2, -1) * src.score_scale              # (1, nh, 1, Tk)
                step.append(scores.softmax(-1)[0, :, 0])                                   # (nh, Tk)
                cache.observe(step[-1][:, None])
                cache.compress()
            if full_logprobs is None:
                weights.append(torch.stack(step).numpy())                                   # (L, nh, t + 1)
            kept[-1] = [np.union1d(before, [t]) for before in kept[-1]]  # what the step attended: held + itself
            nbytes[t] = sum(c.nbytes for c in caches)
            logprobs.append(out.logits[0, -1].float().log_softmax(-1))
            if progress is not None:
                progress(t + 1, steps)
    logprobs = torch.stack(logprobs)                                          # (T - 1, V)
    target = x[0, 1:].cpu()
    nll = -logprobs.gather(-1, target[:, None])[:, 0].numpy()
    ref = logprobs if full_logprobs is None else full_logprobs
    kl = (ref.exp() * (ref - logprobs)).sum(-1).clamp_min(0).numpy()
    agree = (ref.argmax(-1) == logprobs.argmax(-1)).numpy()
    return PolicyRun(policy, nbytes, nll, kl, agree, kept, weights, name, shape, len(caches)), logprobs


def compare(model: LanguageModel, ids: list[int], policies: list[Policy], progress=None,
            cancelled=None, others: dict[str, LanguageModel] | None = None) -> list[PolicyRun]:
    """The full cache first, then each policy, over the same text, then each of ``others`` (name -> a model with
    the same tokenizer and another attention, e.g. MQA or MLA) with its own full cache, against the first model's:
    their runs in that order. ``progress(done, total)`` counts the steps of all the runs."""
    others = others or {}
    total = 1 + len(policies) + len(others)
    report = None if progress is None else (lambda i: lambda done, steps: progress(i * steps + done, total * steps))
    full, full_logprobs = run_policy(model, ids, FULL, progress=None if report is None else report(0),
                                     cancelled=cancelled)
    runs = [full]
    for i, policy in enumerate(policies, 1):
        runs.append(run_policy(model, ids, policy, full_logprobs, progress=None if report is None else report(i),
                               cancelled=cancelled)[0])
    for i, (name, other) in enumerate(others.items(), 1 + len(policies)):
        runs.append(run_policy(other, ids, FULL, full_logprobs, progress=None if report is None else report(i),
                               cancelled=cancelled, name=name)[0])
    return runs
