"""The trainer on tiny configs: it learns, it resumes exactly, it writes a complete card."""
import json

import pytest
import torch
from safetensors.torch import load_file

from playground.models.checkpoint import load_model
from playground.train.loop import TrainConfig, train
from playground.zoo import BASE_MODEL, ZOO, entry_configs

from conftest import tiny_config

TASK = dict(data="task:induction", task_length=8, batch_size=16, lr=1e-2, warmup=5, eval_every=10,
            eval_windows=8, save_every=5)


def test_training_lowers_the_loss_and_writes_card(tmp_path):
    cfg = tiny_config(context_length=24, vocab_size=40)
    out = train(cfg, TrainConfig(steps=60, **TASK), tmp_path / "run", command="test")
    card = json.loads((out / "card.json").read_text())
    history = card["history"]
    assert history["val_loss"][-1] < history["val_loss"][0] - 0.3
    assert card["steps"] == 60 and card["parameters"] > 0 and card["command"] == "test"
    assert 0.0 <= card["val"]["accuracy"] <= 1.0
    assert (out / "loss_curve.svg").read_text().startswith("<svg")
    assert not (out / "train_state.json").exists()  # the finished folder holds only the model
    assert all(t.dtype == torch.float16 for t in load_file(out / "model.safetensors").values())
    load_model(out)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path):
    cfg = tiny_config(context_length=24, vocab_size=40, position="alibi")
    tcfg = TrainConfig(steps=20, **TASK)
    train(cfg, tcfg, tmp_path / "straight")
    calls = {"n": 0}

    def stop_after_12():
        calls["n"] += 1
        return calls["n"] == 12

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tcfg, tmp_path / "broken", should_stop=stop_after_12)
    assert json.loads((tmp_path / "broken" / "train_state.json").read_text())["step"] == 12
    steps = []
    train(cfg, tcfg, tmp_path / "broken", resume=True, on_step=lambda e: steps.append(e["step"]))
    assert steps[0] == 13 and steps[-1] == 20
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "broken" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_text_training_on_any_utf8_file(tmp_path):
    text = "".join(f"Line {i}: to be or not to be, that is the question {i % 7}.\n" for i in range(400))
    (tmp_path / "corpus.txt").write_text(text)
    cfg = tiny_config(vocab_size=2048, context_length=32, family="prefix")
    tcfg = TrainConfig(data=str(tmp_path / "corpus.txt"), steps=30, batch_size=8, lr=5e-3, warmup=3,
                       eval_every=15, eval_windows=4, save_every=100)
    card = json.loads((train(cfg, tcfg, tmp_path / "text") / "card.json").read_text())
    assert card["history"]["val_loss"][-1] < card["history"]["val_loss"][0]
    assert card["val_bits_per_char"] > 0 and card["val_bits_per_char_4x"] > 0
    assert len(card["loss_by_position_4x"]) == 4 * 32
    assert card["data"]["sha256"]


def test_encdec_and_learned_4x_note(tmp_path):
    text = "".join(f"{i} shall I compare thee to a summer's day?\n" for i in range(300))
    (tmp_path / "c.txt").write_text(text)
    tcfg = TrainConfig(data=str(tmp_path / "c.txt"), steps=4, batch_size=4, eval_every=4, eval_windows=2)
    card = json.loads((train(tiny_config(vocab_size=2048, context_length=16, family="encdec", position="learned"),
                             tcfg, tmp_path / "ed") / "card.json").read_text())
    assert card["val_bits_per_char_4x"] is None and "learned positions" in card["val_4x_note"]


def test_bad_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        train(tiny_config(), TrainConfig(data="task:sorting", steps=1), tmp_path / "x")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(ValueError, match="UTF-8"):
        train(tiny_config(vocab_size=2048), TrainConfig(data=str(tmp_path / "bad.txt"), steps=1), tmp_path / "y")


def test_zoo_entries_change_one_factor():
    """Each entry changes one factor from the baseline; the KV-cache lab's, from the lab's MHA model (its context:
    512 tokens), which changes the context alone. Every text entry reads the baseline's tokens per step."""
    base, _ = entry_configs("baseline")
    lab, _ = entry_configs("lab-mha")
    assert {k for k in BASE_MODEL if getattr(lab, k) != getattr(base, k)} == {"context_length"}
    for name, entry in ZOO.items():
        cfg, tcfg = entry_configs(name)
        reference = lab if entry.get("lab") else base
        changed = {k for k in [*BASE_MODEL, "kv_lora_rank", "qk_rope_dim"] if getattr(cfg, k) != getattr(reference, k)}
        if cfg.variant == "MLA":  # one factor: the latent (its two widths, every head's K/V rebuilt from it)
            changed -= {"qk_rope_dim"}
        if entry.get("recurrent"):  # RWKV and Mamba have no position encoding to keep
            changed.discard("position")
        if not entry.get("task") and not entry.get("recurrent"):
            assert tcfg.batch_size * cfg.context_length * (2 if cfg.family == "encdec" else 1) == 32 * 128
            assert len(changed - {"n_layer"}) <= 1, (name, changed)
