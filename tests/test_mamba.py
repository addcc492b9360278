"""Mamba-1: scan = step, the hidden attention is exact per channel, the state is constant, and
the logits match `transformers.MambaForCausalLM` (its slow path) on random weights."""
import math

import pytest
import torch
import torch.nn.functional as F

import playground.models.mamba as mamba
from playground.config import ModelConfig
from playground.models.mamba import Mamba
from playground.models.mamba_implicit import implicit_attention
from playground.models import build_model
from playground.nn.cache import state_bytes_per_layer

from conftest import assert_badge_catches, assert_state_is_constant, implicit_records, require

V, D, H, L, N_STATE, K, EXPAND = 97, 32, 4, 2, 16, 4, 2
D_IN = EXPAND * D


def config(**overrides) -> ModelConfig:
    base = {"family": "mamba", "position": "none", "vocab_size": V, "context_length": 64, "n_layer": L,
            "d_model": D, "n_heads": H, "n_kv_heads": H, "d_state": N_STATE, "d_conv": K, "expand": EXPAND}
    return ModelConfig(**{**base, **overrides})


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values everywhere, in each parameter's natural range (ours or transformers' names)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 2 + 0.1))  # A in -2.1..-0.1
            elif name.endswith("dt_proj.bias"):
                p.copy_(noise * 0.5 - 2.0)  # softplus: delta around 0.05..0.4
            elif p.dim() == 1:
                p.copy_(1.0 + 0.2 * noise if name.endswith(("norm.weight", "norm_out.weight", "norm_f.weight"))
                        else 0.3 * noise)
            else:  # matrices: about unit gain, so float32 rounding is not blown up layer after layer
                p.copy_(noise / math.sqrt(p[0].numel()))
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return randomize(build_model(config()))


def test_build_model_gives_mamba(model):
    assert isinstance(model, Mamba) and model.n_params > 0


def test_default_init_follows_mamba():
    fresh = build_model(config())
    mixer = fresh.blocks[0].mixer
    assert torch.allclose(-torch.exp(mixer.A_log[0]), -torch.arange(1.0, N_STATE + 1))
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-6
    assert torch.equal(mixer.D, torch.ones(D_IN))



def test_hidden_attention_reproduces_the_scan(model):
    """Per channel, alpha from the formula computed here equals the library's, and
    sum_s alpha[t, s, c] x_s[c] + D x_t[c] equals a step-by-step scan written from the recurrence."""
    T = 20
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(2))
    records = implicit_records(model, ids, "mixer")
    assert len(records) == L and records[0][0].weights.shape[1] == H
    for layer, (rec, h_in) in enumerate(records):
        mx = model.blocks[layer].mixer
        with torch.no_grad():
            x = mx.in_proj(h_in)[..., :D_IN]  # (B, T, d_in)
            x = F.silu(F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), mx.conv1d.weight, mx.conv1d.bias,
                                groups=D_IN)).transpose(1, 2)
            dBC = mx.x_proj(x)
            rank = math.ceil(D / 16)
            delta = F.softplus(mx.dt_proj(dBC[..., :rank]))  # (B, T, d_in)
            Bm, Cm = dBC[..., rank:rank + N_STATE], dBC[..., rank + N_STATE:]
            A = -torch.exp(mx.A_log)
            alpha = torch.zeros(2, T, T, D_IN)
            for t in range(T):
                for s in range(t + 1):
                    decay = torch.exp(A * delta[:, s + 1:t + 1].sum(1)[..., None])  # (B, d_in, n)
                    alpha[:, t, s] = (decay * Bm[:, s, None, :] * Cm[:, t, None, :]).sum(-1) * delta[:, s]
            h, y = torch.zeros(2, D_IN, N_STATE), []
            for t in range(T):
                dt = delta[:, t, :, None]  # (B, d_in, 1)
                h = torch.exp(dt * A) * h + dt * Bm[:, t, None, :] * x[:, t, :, None]
                y.append((h * Cm[:, t, None, :]).sum(-1) + mx.D * x[:, t])
            y = torch.stack(y, dim=1)  # (B, T, d_in)
        ours = implicit_attention(delta, Bm, Cm, A)
        assert (ours - alpha).abs().max() < 1e-5
        assert (torch.einsum("btsc,bsc->btc", alpha, x) + mx.D * x - y).abs().max() < 1e-4
        heads = alpha.view(2, T, T, H, D_IN // H).mean(-1).permute(0, 3, 1, 2)  # the display: mean per channel group
        assert (heads - rec.weights).abs().max() < 1e-5


@pytest.mark.parametrize("T", [8, 80])
def test_a_wrong_hidden_attention_shows_in_max_abs_diff(model, monkeypatch, T):
    """The check compares with the scan, which never forms alpha: alpha 1% off moves max_abs_diff
    from rounding to far above it, for a short prompt, a long one and a token decoded from the state."""
    x = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(3))
    right = mamba.implicit_attention_blocks

    def wrong(*args, **kwargs):
        for channels, rows, alpha in right(*args, **kwargs):
            yield channels, rows, alpha * 1.01

    assert_badge_catches(model, x, lambda: monkeypatch.setattr(mamba, "implicit_attention_blocks", wrong))


def test_state_bytes_are_constant_and_match_the_formula(model):
    expected = L * (D_IN * (K - 1) + D_IN * N_STATE) * 4  # float32 conv state + SSM state per layer
    assert L * state_bytes_per_layer("Mamba", model.cfg) == expected
    assert_state_is_constant(model, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_bytes_follow_the_models_own_config(dtype):
    """expand, d_state and d_conv come from the config; the conv state is in the weights' dtype,
    the SSM state in float32 at least."""
    cfg = config(expand=3, d_state=8, d_conv=3)
    model = build_model(cfg).to(dtype)
    size = torch.empty(0, dtype=dtype).element_size()
    expected = L * (3 * D * (3 - 1) * size + 3 * D * 8 * 4)
    assert L * state_bytes_per_layer("Mamba", cfg, dtype) == expected
    with torch.no_grad():
        model.setup_cache()
        assert model.cache_bytes() == expected
        model(torch.randint(0, V, (1, 5)))
        model(torch.randint(0, V, (1, 1)), start_pos=5)
    assert model.cache_bytes() == expected
    model.clear_cache()



def test_logits_match_transformers_mamba():
    transformers = require("transformers", "pip install -r requirements-dev.txt")
    hf_cfg = transformers.MambaConfig(vocab_size=V, hidden_size=D, state_size=N_STATE, num_hidden_layers=L,
                                      expand=EXPAND, conv_kernel=K, layer_norm_epsilon=1e-5, use_bias=False,
                                      use_conv_bias=True, time_step_rank="auto", tie_word_embeddings=False,
                                      use_mambapy=False)
    torch.manual_seed(0)
    theirs = randomize(transformers.MambaForCausalLM(hf_cfg), seed=7)
    ours = build_model(config(tie_embeddings=False, norm_eps=hf_cfg.layer_norm_epsilon)).eval()
    assert ours.blocks[0].mixer.rank == hf_cfg.time_step_rank
    names = {"tok_emb.weight": "backbone.embeddings.weight", "norm_out.weight": "backbone.norm_f.weight",
             "lm_head.weight": "lm_head.weight"}
    for i in range(L):
        names[f"blocks.{i}.norm.weight"] = f"backbone.layers.{i}.norm.weight"
        for p in ("in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                  "dt_proj.bias", "A_log", "D", "out_proj.weight"):
            names[f"blocks.{i}.mixer.{p}"] = f"backbone.layers.{i}.mixer.{p}"
    sd = theirs.state_dict()
    ours.load_state_dict({mine: sd[hf] for mine, hf in names.items()})
    x = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = theirs(x, use_cache=False).logits
        logits = ours(x).logits
    diff = (logits - ref).abs().max().item()
    print(f"max |ours - transformers {transformers.__version__} MambaForCausalLM| = {diff:.2e}")
    assert diff < 1e-4, diff
