"""Bad checkpoint folders are refused with a ValueError that says what is wrong, and nothing stays loaded.

Every model transformers builds while loading is watched through a weak reference: after a refusal and a garbage
collection, none may be alive. A pickle planted beside valid safetensors is
never executed: the test first proves its pickle would write a marker file when unpickled.
"""
import gc
import json
import pickle
import shutil
import weakref

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import require

transformers = require("transformers", "pip install -r requirements-dev.txt")

from playground.models.pretrained import loader  # noqa: E402


@pytest.fixture
def watched(monkeypatch):
    """Weak references to every transformers model built while loading (and, through it, its tensors)."""
    refs = []
    post_init = transformers.PreTrainedModel.post_init

    def watched_post_init(self):
        refs.append(weakref.ref(self))
        return post_init(self)

    monkeypatch.setattr(transformers.PreTrainedModel, "post_init", watched_post_init)
    return refs


def refused(folder, watched, *words):
    """Load ``folder``, expect a ValueError containing ``words``, and check nothing taken or built survives,
    even while the caller still holds the exception (a page logging it, a notebook's last traceback)."""
    with pytest.raises(ValueError) as err:
        loader.load_folder(folder)
    message = str(err.value)
    for word in words:
        assert word in message, message
    gc.collect()
    alive = [ref() for ref in watched if ref() is not None]
    assert not alive, f"{len(alive)} models survive the refusal"
    assert err.value.__traceback__ is not None
    return message


@pytest.fixture
def folder(hf_checkpoint, tmp_path):
    """A private copy of the tiny Llama checkpoint (GQA, tied embeddings), to break."""
    return shutil.copytree(hf_checkpoint("llama"), tmp_path / "llama")


def rewrite(folder, change):
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors")


def test_the_intact_folder_loads(folder, watched):
    model, _ = loader.load_folder(folder)
    assert model.cfg.n_layer == 2 and watched  # the watch sees the loading


def test_missing_tensor(folder, watched):
    rewrite(folder, lambda s: s.pop("model.layers.1.mlp.up_proj.weight"))
    refused(folder, watched, "missing tensor", "model.layers.1.mlp.up_proj.weight")
    assert watched  # the model was built before the refusal, and is gone


def test_extra_tensor(folder, watched):
    """A bias the config turns off is refused (config.json and the weights disagree)."""
    rewrite(folder, lambda s: s.update({"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}))
    refused(folder, watched, "unexpected tensor", "model.layers.0.self_attn.q_proj.bias")


def test_another_tasks_head_is_passed_over(folder, watched):
    """A tensor of a module the class does not build (a classifier of another task, BERT's pooler) is not part of
    this model: the checkpoint opens, as transformers opens it."""
    rewrite(folder, lambda s: s.update({"score.weight": torch.zeros(2, 64)}))
    model, _ = loader.load_folder(folder)
    assert model.cfg.n_layer == 2


def test_wrong_shape(folder, watched):
    rewrite(folder, lambda s: s.update({"model.layers.1.self_attn.k_proj.weight": torch.zeros(64, 64)}))
    refused(folder, watched, "model.layers.1.self_attn.k_proj.weight", "(64, 64)", "(32, 64)")


def test_truncated_safetensors(folder, watched):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    refused(folder, watched, "model.safetensors", "truncated")


def test_absurd_config_is_refused_before_anything_is_read(folder, watched):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 5000}))
    refused(folder, watched, "n_layer=5,000", "limit")
    assert not watched  # no model built


def test_missing_path(tmp_path, watched):
    refused(tmp_path / "nowhere", watched, "not found", "nowhere")


def test_unknown_model_type_is_named(folder, watched):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "not-a-model"}))
    refused(folder, watched, "'not-a-model'", "transformers")
    assert not watched


def test_an_architecture_without_the_attention_interface_is_refused_before_a_model_is_built(folder, watched):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bloom", "architectures": ["BloomForCausalLM"]}))
    refused(folder, watched, "BloomForCausalLM", "attention interface")
    assert not watched


def test_settings_that_change_the_weights_shapes_are_named(folder, watched):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "head_dim": 8}))
    refused(folder, watched, "q_proj.weight", "shape")


class Planted:
    """Unpickling this writes a marker file: what a malicious pytorch_model.bin could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_folder_with_only_pickled_weights_is_refused(folder, tmp_path, watched):
    marker = tmp_path / "executed"
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Planted(marker)))
    message = refused(folder, watched, "pytorch_model.bin", "safetensors", "unpickled")
    assert not marker.exists(), message


def test_a_planted_pickle_beside_safetensors_is_never_executed(folder, tmp_path, watched):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Planted(control)))  # the plant works: unpickling it writes its marker
    assert control.exists()
    marker = tmp_path / "executed"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Planted(marker)))
    (folder / "training_args.pt").write_bytes(pickle.dumps(Planted(marker)))
    model, _ = loader.load_folder(folder)
    assert model.cfg.n_layer == 2
    assert not marker.exists()
