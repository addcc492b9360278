"""No Tq x Tk tensor on the causal decoder's path: every op of an analysis at 4,096 tokens is watched by a
``TorchDispatchMode``, and none may produce a tensor of more than T²/8 elements (a dense mask, a pattern check or a
bias would be T²; the MLP's hidden activations at d_ff = T/8 are T²/8 exactly). A failure names the op, its shape
and the playground lines that called it."""
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from playground.ui import service
from playground.zoo import ModelSpec

T = 4096


class LargeOutputs(TorchDispatchMode):
    """Records every op whose output has more than ``limit`` elements, with the playground frames that called it."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.found = limit, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor) and o.numel() > self.limit:
                callers = [f"{f.filename.split('/playground/')[-1]}:{f.lineno}" for f in traceback.extract_stack()
                           if "/playground/" in f.filename]
                self.found.append(f"{func} -> {tuple(o.shape)} from {' < '.join(reversed(callers[-4:]))}")
        return out


def test_a_causal_decoders_analysis_at_4096_tokens_builds_nothing_of_t_squared():
    spec = ModelSpec.parse("zoo:baseline")
    ids = spec.tokenizer().encode("all the world's a stage, and all the men and women merely players " * 400)[:T]
    text = spec.tokenizer().decode(ids)
    guard = LargeOutputs(T * T // 8)
    with guard:
        result, _ = service.analyze_text(spec, text)
    assert len(result.token_ids) == T
    assert not guard.found, "\n".join(guard.found[:10])


def test_the_guard_sees_a_dense_mask():
    """The same guard on the rule's dense mask at T: what the analysis above must not build."""
    from playground.nn.masks import MaskRule, positions

    guard = LargeOutputs(T * T // 8)
    with guard:
        MaskRule("causal").dense(positions(0, T), positions(0, T))
    assert guard.found and "(4096, 4096)" in guard.found[0]
