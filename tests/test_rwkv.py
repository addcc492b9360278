"""RWKV-5.2: parallel = recurrent, the implicit attention is exact, the state is constant, and
the logits match the `rwkv` package (its RWKV-5.2 CPU path) on random weights."""
import importlib.metadata

import pytest
import torch

import playground.models.rwkv as rwkv
from playground.config import ModelConfig
from playground.models.rwkv import RWKV, lerp, token_shift
from playground.models import build_model
from playground.nn.cache import state_bytes_per_layer

from conftest import assert_badge_catches, assert_state_is_constant, implicit_records, require

V, D, H, L, FF = 97, 32, 4, 2, 64
N = D // H


def config(**overrides) -> ModelConfig:
    base = {"family": "rwkv", "position": "none", "vocab_size": V, "context_length": 64, "n_layer": L,
            "d_model": D, "n_heads": H, "n_kv_heads": H, "d_ff": FF}
    return ModelConfig(**{**base, **overrides})


def randomize(model: RWKV, seed: int = 0) -> RWKV:
    """Random values everywhere, in each parameter's natural range, so every weight is checked."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".mix_" in name:
                p.copy_(torch.rand(p.shape, generator=g))
            elif name.endswith("decay"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.7 - 1.0)  # w from about 0.0 to 0.9
            elif p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("weight")
                        else 0.3 * torch.randn(p.shape, generator=g))
            else:  # matrices: about unit gain, so float32 rounding is not blown up layer after layer
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return randomize(build_model(config()))


def test_build_model_gives_rwkv(model):
    assert isinstance(model, RWKV) and model.n_params > 0



def test_implicit_attention_reproduces_the_wkv(model):
    """The record's alpha equals the formula computed here from r, k, w, u, and alpha @ v equals a
    step-by-step WKV written from the recurrence."""
    T = 24
    x = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(2))
    records = implicit_records(model, x, "time_mix")
    assert len(records) == L and records[0][0].weights.shape[1] == H
    for layer, (rec, xin) in enumerate(records):
        tm = model.blocks[layer].time_mix
        with torch.no_grad():
            prev = token_shift(xin, None)
            heads = lambda t: t.view(2, T, H, N).transpose(1, 2)
            r = heads(tm.receptance(lerp(xin, prev, tm.mix_receptance)))
            k = heads(tm.key(lerp(xin, prev, tm.mix_key)))
            v = heads(tm.value(lerp(xin, prev, tm.mix_value)))
            w = torch.exp(-torch.exp(tm.decay)).view(H, N)
            u = tm.bonus.view(H, N)
            alpha = torch.zeros(2, H, T, T)
            for t in range(T):
                alpha[:, :, t, t] = (r[:, :, t] * u * k[:, :, t]).sum(-1)
                for s in range(t):
                    alpha[:, :, t, s] = (r[:, :, t] * k[:, :, s] * w ** (t - s - 1)).sum(-1)
            S, o = torch.zeros(2, H, N, N), []
            for t in range(T):
                kv = k[:, :, t, :, None] * v[:, :, t, None, :]
                o.append((r[:, :, t, None, :] @ (u[..., None] * kv + S)).squeeze(-2))
                S = w[..., None] * S + kv
            o = torch.stack(o, dim=2)  # (B, H, T, N)
        assert (alpha - rec.weights).abs().max() < 1e-5
        assert (alpha @ v - o).abs().max() < 1e-4


@pytest.mark.parametrize("T", [8, 80])  # within one chunk of the parallel form, and across three
def test_a_wrong_implicit_matrix_shows_in_max_abs_diff(model, monkeypatch, T):
    """The badge's check shares no code with the matrix: alpha 1% off (the parallel form's chunks
    read the same wrong alpha) moves max_abs_diff from rounding to far above it, for a short
    prompt, a long one and a token decoded from the state."""
    x = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(3))
    right = rwkv.implicit_attention

    def wrong(*args, **kwargs):
        return right(*args, **kwargs) * 1.01

    assert_badge_catches(model, x, lambda: monkeypatch.setattr(rwkv, "implicit_attention", wrong))


def test_state_bytes_are_constant_and_match_the_formula(model):
    expected = L * D * (2 + N) * 4  # float32: two token-shift vectors and H matrices N x N per layer
    assert L * state_bytes_per_layer("RWKV", model.cfg) == expected
    assert_state_is_constant(model, expected)


def test_wkv_state_is_counted_in_its_own_dtype():
    """bfloat16 weights: the token shifts take 2 bytes an element, the WKV matrices 4 (float32,
    like the reference implementation), and the formula says so."""
    model = build_model(config()).to(torch.bfloat16)
    expected = L * (2 * D * 2 + D * N * 4)
    assert L * state_bytes_per_layer("RWKV", model.cfg, torch.bfloat16) == expected
    assert L * state_bytes_per_layer("RWKV", model.cfg, "bf16") == expected
    with torch.no_grad():
        model.setup_cache()
        model(torch.randint(0, V, (1, 5)))
        model(torch.randint(0, V, (1, 1)), start_pos=5)
    assert model.states[0].wkv.dtype == torch.float32 and model.states[0].time_shift.dtype == torch.bfloat16
    assert model.cache_bytes() == expected
    model.clear_cache()



# ---------------------------------------------------------------- the reference: the `rwkv` package

def official_names(n_layer: int) -> dict[str, str]:
    """Our parameter name -> RWKV-LM's checkpoint name (RWKV-5.2, "x052")."""
    names = {"tok_emb.weight": "emb.weight", "lm_head.weight": "head.weight",
             "norm_emb.weight": "blocks.0.ln0.weight", "norm_emb.bias": "blocks.0.ln0.bias",
             "norm_out.weight": "ln_out.weight", "norm_out.bias": "ln_out.bias"}
    for i in range(n_layer):
        b = f"blocks.{i}."
        for ours, theirs in (("norm_time", "ln1"), ("norm_channel", "ln2"), ("time_mix.head_norm", "att.ln_x")):
            for kind in ("weight", "bias"):
                names[f"{b}{ours}.{kind}"] = f"{b}{theirs}.{kind}"
        for ours, theirs in (("receptance", "r"), ("key", "k"), ("value", "v"), ("gate", "g")):
            names[f"{b}time_mix.mix_{ours}"] = f"{b}att.time_mix_{theirs}"
        for name in ("receptance", "key", "value", "gate", "output"):
            names[f"{b}time_mix.{name}.weight"] = f"{b}att.{name}.weight"
        names[f"{b}time_mix.decay"] = f"{b}att.time_decay"
        names[f"{b}time_mix.bonus"] = f"{b}att.time_faaaa"
        for ours, theirs in (("key", "k"), ("receptance", "r")):
            names[f"{b}channel_mix.mix_{ours}"] = f"{b}ffn.time_mix_{theirs}"
        for name in ("key", "receptance", "value"):
            names[f"{b}channel_mix.{name}.weight"] = f"{b}ffn.{name}.weight"
    return names


def to_official(model: RWKV) -> dict[str, torch.Tensor]:
    """Our weights under RWKV-LM's names and shapes: token-shift mixes (1, 1, d), decay and bonus (H, N)."""
    H_, N_ = model.cfg.n_heads, model.cfg.head_dim
    out = {}
    for ours, theirs in official_names(model.cfg.n_layer).items():
        t = model.state_dict()[ours].detach().clone()
        if ".time_mix_" in theirs:
            t = t.view(1, 1, -1)
        elif theirs.endswith(("time_decay", "time_faaaa")):
            t = t.view(H_, N_)
        out[theirs] = t
    return out


def from_official(state: dict[str, torch.Tensor]) -> RWKV:
    """An RWKV-5.2 checkpoint's tensors -> our model; the config is read off the shapes."""
    n_layer = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    n_heads = state["blocks.0.att.time_decay"].shape[0]
    vocab, d = state["emb.weight"].shape
    model = build_model(config(vocab_size=vocab, d_model=d, n_heads=n_heads, n_kv_heads=n_heads, n_layer=n_layer,
                               d_ff=state["blocks.0.ffn.key.weight"].shape[0], tie_embeddings=False))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict({ours: state[theirs].reshape(shapes[ours])
                           for ours, theirs in official_names(n_layer).items()})
    return model.eval()


def test_logits_match_the_rwkv_package(tmp_path, monkeypatch):
    monkeypatch.setenv("RWKV_JIT_ON", "0")
    monkeypatch.setenv("RWKV_CUDA_ON", "0")
    monkeypatch.delenv("RWKV_V7_ON", raising=False)
    rwkv_model = require("rwkv.model", "pip install -r requirements-dev.txt")
    source = randomize(build_model(config(tie_embeddings=False)), seed=7)
    path = tmp_path / "rwkv5-random.pth"
    torch.save(to_official(source), path)

    theirs = rwkv_model.RWKV(str(path), "cpu fp32", verbose=False)
    assert theirs.version == 5.2  # detected from ln_x, gate.weight and a (H, N) time_decay
    ours = from_official(torch.load(path, weights_only=True))
    tokens = torch.randint(0, V, (40,), generator=torch.Generator().manual_seed(8)).tolist()
    ref, state = theirs.forward(tokens[:33], None, full_output=True)  # (33, V), their sequence mode
    ref_step = torch.stack([theirs.forward([t], state)[0] for t in tokens[33:]])  # one-token mode, state in place
    with torch.no_grad():
        logits = ours(torch.tensor([tokens])).logits[0]  # (40, V)
    diff = max((logits[:33] - ref).abs().max().item(), (logits[33:] - ref_step).abs().max().item())
    print(f"max |ours - rwkv {importlib.metadata.version('rwkv')}| = {diff:.2e}")
    assert diff < 1e-4, diff
    assert torch.allclose(ours(torch.tensor([tokens])).logits, source(torch.tensor([tokens])).logits)
