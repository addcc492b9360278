"""The shipped zoo: loadable, documented, small, and the synthetic models do what they claim."""
import json

import numpy as np
import pytest
import torch

from playground.inspect import heads
from playground import zoo
from playground.inspect.analysis import analyze
from playground.train.tasks import induction_task
from playground.train.tokenizer import Tokenizer

CARD_FIELDS = {"command", "data", "steps", "wall_time_s", "parameters", "weights_sha256", "history"}


def test_models_dir_is_under_64_mb():
    size = sum(p.stat().st_size for p in zoo.MODELS_DIR.rglob("*") if p.is_file())
    assert size < 64 * 2**20


@pytest.mark.parametrize("name", zoo.available())
def test_shipped_model_loads_and_card_is_complete(name):
    card = json.loads((zoo.MODELS_DIR / name / "card.json").read_text())
    assert CARD_FIELDS <= set(card)
    assert card["command"] == f"python -m playground.train --zoo {name}"
    if not zoo.ZOO[name].get("task"):
        assert card["val_bits_per_char"] > 0 and card["data"]["val_works"]
        assert card["data"]["tokenizer_sha256"]
    model = zoo.load(name)
    cfg, _ = zoo.entry_configs(name)
    assert {k: v for k, v in model.cfg.to_dict().items() if k != "backend"} == \
        {k: v for k, v in cfg.to_dict().items() if k != "backend"}


def test_baseline_meets_the_bits_per_char_target():
    card = json.loads((zoo.MODELS_DIR / "baseline" / "card.json").read_text())
    assert card["val_bits_per_char"] <= 2.4
    assert card["steps"] == zoo.BASE_TRAIN["steps"]


@pytest.fixture(scope="module")
def induction():
    model = zoo.load("induction")
    x, y, mask = induction_task(64, 24, model.cfg.vocab_size, 1234)  # fresh sequences, not the training seed
    return model, x, y, mask


def test_induction_model_copies_the_repeated_half(induction):
    model, x, y, mask = induction
    with torch.no_grad():
        pred = model(x).logits.argmax(-1)
    accuracy = ((pred == y) & mask.bool()).sum() / mask.sum()
    assert accuracy >= 0.95


def test_induction_head_attends_to_the_token_after_the_earlier_occurrence(induction):
    model, x, _, _ = induction
    ids = x[0].tolist()
    n = 24
    w = analyze(model, ids).weights("self")  # (L, nh, T, T)
    T = len(ids)
    # second copy starts at n + 1 (after BOS); token i repeats token i - n, which was followed by i - n + 1
    mass = np.array([[np.mean([A[i, i - n + 1] for i in range(n + 1, T)]) for A in layer] for layer in w])
    assert mass.max() >= 0.5
    best = np.unravel_index(mass.argmax(), mass.shape)
    assert heads.induction_score(w[best], ids) >= 0.5


def test_head_role_scores_on_known_patterns():
    T = 6
    prev = np.eye(T, k=-1)
    prev[0, 0] = 1
    assert heads.previous_token_score(prev) == pytest.approx(1.0)
    sink = np.zeros((T, T))
    sink[:, 0] = 1
    assert heads.sink_score(sink) == pytest.approx(1.0) and heads.previous_token_score(sink) < 0.3
    tokens = np.array([5, 7, 9, 5, 7, 9])
    ind = np.zeros((T, T))
    ind[:3, 0] = 1
    for i in range(3, T):
        ind[i, i - 2] = 1  # token after the earlier occurrence of token i
    assert heads.induction_score(ind, tokens) == pytest.approx(1.0)
    assert heads.duplicate_token_score(ind, tokens) == pytest.approx(0.0)
    uniform = np.tril(np.ones((T, T)))
    uniform /= uniform.sum(1, keepdims=True)
    assert heads.entropy(uniform) > heads.entropy(prev)
    assert heads.mean_distance(prev) == pytest.approx(5 / 6)


def test_zoo_models_read_the_shipped_tokenizer():
    tok = Tokenizer.load()
    for name in zoo.available():
        assert zoo.entry_configs(name)[0].vocab_size == tok.vocab_size


def test_reverse_model_cross_attention_is_the_anti_diagonal():
    from playground.ui import service

    choice, _ = service.resolve("decoder", "MHA", "rope", task_model="zoo:reverse")
    result, _ = service.analyze_text(choice, "ignored: task models run on their own task", seed=3)
    w = result.weights("cross")  # (L, nh, Tq, Tk): decoder position i predicts source token n - 1 - i
    n = w.shape[-1]
    anti = np.array([[np.mean([A[i, n - 1 - i] for i in range(n)]) for A in layer] for layer in w])
    assert anti.max() >= 0.9
