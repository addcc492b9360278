"""What RWKV and Mamba share: parallel = recurrent, generation with a state = without, recorded rows
= the full pass, misuse errors, checkpoints, and training. Each model's own checks (reference
implementation, implicit attention formula, state formula) live in test_rwkv.py / test_mamba.py."""
import copy

import pytest
import torch

import test_mamba
import test_rwkv
from playground.models.checkpoint import load_model, save_model
from playground.train.evaluate import batch_loss
from playground.inspect.generation import generate
from playground.models import build_model

V = test_rwkv.V
assert test_mamba.V == V
FAMILIES = {"rwkv": test_rwkv, "mamba": test_mamba}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return FAMILIES[request.param]


@pytest.fixture(scope="module")
def model(family):
    return family.randomize(build_model(family.config()))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_parallel_equals_recurrent_over_128_tokens(model, dtype, tol):
    """Float32 within rounding; float64 shows the two modes are the same computation."""
    model = copy.deepcopy(model).to(dtype)
    x = torch.randint(0, V, (2, 128), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x).logits
        model.setup_cache(batch=2)
        steps = torch.cat([model(x[:, t:t + 1], start_pos=t).logits for t in range(128)], dim=1)
        model.setup_cache(batch=2)  # prefill in one call, then continue step by step
        split = torch.cat([model(x[:, :77]).logits] + [model(x[:, t:t + 1], start_pos=t).logits
                                                       for t in range(77, 128)], dim=1)
    assert (steps - full).abs().max() < tol
    assert (split - full).abs().max() < tol


def test_generation_with_state_equals_without(model):
    prompt = torch.randint(0, V, (10,), generator=torch.Generator().manual_seed(5)).tolist()
    cached = generate(model, prompt, 64, use_cache=True)
    uncached = generate(model, prompt, 64, use_cache=False)
    assert cached.tokens == uncached.tokens
    assert max((a.logits - b.logits).abs().max().item() for a, b in zip(cached.steps, uncached.steps)) < 1e-4
    assert len({s.cache_bytes for s in cached.steps}) == 1  # constant state while generating


def test_recorded_rows_are_the_full_pass_rows(model):
    prompt = [5, 9, 11, 2, 7]
    gen = generate(model, prompt, 6, record=True)
    with torch.no_grad():
        full = model(torch.tensor([prompt + gen.tokens[:-1]]), capture=True)
    for i, step in enumerate(gen.steps):
        t = len(prompt) - 1 + i
        for layer, rec in enumerate(full.attentions):
            assert torch.allclose(torch.from_numpy(step.attention["implicit"][layer]), rec.weights[0, :, t, :t + 1],
                                  atol=1e-5)



def test_misuse_raises_saying_what_to_do(model):
    x = torch.randint(0, V, (1, 4))
    with pytest.raises(ValueError, match="setup_cache"):
        model(x, start_pos=3)
    with pytest.raises(ValueError, match="prefix_len"):
        model(x, prefix_len=2)
    with pytest.raises(ValueError, match="key_valid"):
        model(x, key_valid=torch.ones(1, 4, dtype=torch.bool))
    with torch.no_grad():
        model.setup_cache()
        model(x)
        with pytest.raises(ValueError, match="start_pos must be 4"):
            model(x, start_pos=2)
        with pytest.raises(ValueError, match="capture=True from the first call"):
            model(x[:, :1], start_pos=4, capture=True)
    model.clear_cache()


def test_checkpoint_round_trip(model, tmp_path):
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.randint(0, V, (1, 20))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    assert loaded.lm_head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()


def test_training_steps_lower_the_loss(family):
    torch.manual_seed(0)
    model = build_model(family.config()).train()
    ids = torch.randint(0, V, (4, 33), generator=torch.Generator().manual_seed(3))
    batch = {"x": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": torch.ones(4, 32, dtype=torch.bool)}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = batch_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
