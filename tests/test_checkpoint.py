import json
import pickle

import pytest
import torch

from playground.models.checkpoint import load_model, save_model
from playground.config import ModelConfig

from conftest import tiny_model


@pytest.fixture
def saved(tmp_path):
    model = tiny_model(family="prefix", position="alibi", n_kv_heads=2)
    save_model(model, tmp_path / "m", card={"note": "test"})
    return model, tmp_path / "m"


def test_round_trip_float32_and_float16(saved, tmp_path):
    model, folder = saved
    loaded = load_model(folder)
    x = torch.randint(0, 97, (1, 10))
    assert torch.equal(loaded(x, prefix_len=3).logits, model(x, prefix_len=3).logits)
    save_model(model, tmp_path / "half", dtype=torch.float16)
    half = load_model(tmp_path / "half")
    assert (half(x).logits - model(x).logits).abs().max() < 0.05
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < (folder / "model.safetensors").stat().st_size


def test_tied_weights_stay_tied(saved):
    loaded = load_model(saved[1])
    assert loaded.lm_head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()


def test_pickle_is_refused_with_the_file_named(saved):
    _, folder = saved
    torch.save(saved[0].state_dict(), folder / "model.safetensors")  # a torch.save zip under the right name
    (folder / "card.json").unlink()
    with pytest.raises(ValueError, match="pickle.*only safetensors"):
        load_model(folder)
    (folder / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(folder)


def test_truncated_and_corrupt_files(saved):
    _, folder = saved
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    with pytest.raises(ValueError, match="does not match its card"):
        weights.write_bytes(data[: len(data) // 2])
        load_model(folder)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_model(folder, verify=False)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage json!!!")
    with pytest.raises(ValueError, match="not a valid safetensors"):
        load_model(folder, verify=False)


def test_mismatched_config_and_bad_json(saved):
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "d_ff": 128}))
    with pytest.raises(ValueError, match="shape"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "n_layer": 3}))
    with pytest.raises(ValueError, match="does not fit"):
        load_model(folder)
    (folder / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="config.json"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "card.json").write_text("[1,")
    with pytest.raises(ValueError, match="card.json"):
        load_model(folder)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_model(tmp_path / "nope")
    folder = tmp_path / "empty"
    folder.mkdir()
    ModelConfig().save(folder / "config.json")
    with pytest.raises(ValueError, match="not found"):
        load_model(folder)


def test_a_header_length_starting_with_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    from safetensors.torch import save_file

    from playground.models.checkpoint import load_weights

    for pad in range(300):  # find metadata making the 8-byte header length start with byte 0x80
        path = tmp_path / "w.safetensors"
        save_file({"a": torch.zeros(2)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert torch.equal(load_weights(path)["a"], torch.zeros(2))
