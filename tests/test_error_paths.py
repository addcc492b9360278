"""Errors a visitor reads name files, never the server's paths: a local folder that is missing or broken, a model
trained in the page that is gone, and a raw OS error from deep in the library all reach the page without the
directories they happened in."""
import re

import gradio as gr
import pytest

from playground.ui.attention import analyze
from playground.ui.lang import Words

ABSOLUTE = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+")  # a /dir/dir/ run: what a server path looks like


@pytest.fixture
def local_models(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_LOCAL_MODELS", str(tmp_path))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("spec", ["local:missing", "local:broken", "local:empty", "user:gone-for-good"])
def test_a_model_that_cannot_be_opened_is_named_without_the_servers_folders(local_models, spec):
    with pytest.raises(gr.Error) as refused:
        analyze(spec, "hello")
    said = refused.value.message
    assert str(local_models) not in said and not ABSOLUTE.search(said), said


def test_a_raw_os_error_keeps_the_file_name_and_drops_its_folders(tmp_path):
    error = FileNotFoundError(2, "No such file or directory", f"{tmp_path}/cache/models--x/snapshots/abc/model.safetensors")
    said = Words(None, lang="zh-CN").render(error)
    assert "model.safetensors" in said and str(tmp_path) not in said and not ABSOLUTE.search(said)
