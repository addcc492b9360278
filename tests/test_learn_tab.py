"""The tour's translation step: Show me opens the real Marian model where it can be opened, and otherwise the shipped
encoder-decoder, saying why."""
import pytest

from conftest import require

require("transformers", "pip install -r requirements-dev.txt")

from playground.models.pretrained.hub import HubError  # noqa: E402
from playground.ui import learn_tab  # noqa: E402
from playground.ui.lang import Words  # noqa: E402
from playground.zoo import hub_source  # noqa: E402

STEP = next(step for step in learn_tab.STEPS if step.key == "translation")


@pytest.fixture
def infos(monkeypatch):
    """The messages the page would show as gr.Info."""
    import playground.ui.lang as lang

    shown = []
    monkeypatch.setattr(lang.gr, "Info", shown.append)
    return shown


def test_the_step_names_opus_mt_en_zh_and_the_shipped_encoder_decoder():
    assert STEP.spec == "hf:Helsinki-NLP/opus-mt-en-zh" and STEP.fallback == "zoo:encdec"
    assert STEP.tab == "generate" and STEP.button == "generate-run"


def test_without_the_hub_the_step_shows_the_shipped_encoder_decoder_and_says_why(monkeypatch, infos):
    def offline(scheme, name, progress=None):
        raise HubError("offline", "the Hugging Face Hub cannot be reached (offline?)")
    monkeypatch.setattr(hub_source, "prepare", offline)
    spec = learn_tab.step_spec(Words(), STEP)
    assert str(spec) == "zoo:encdec" and spec.config().family == "encdec"
    assert len(infos) == 1 and "Helsinki-NLP/opus-mt-en-zh" in infos[0] and "cannot be reached" in infos[0]
    assert "zoo:encdec" in infos[0]


def test_where_the_model_can_be_opened_the_step_shows_it(monkeypatch, infos, tmp_path):
    """The Hub stood in for by a Marian-shaped checkpoint that transformers wrote: the step's spec is opened."""
    from pretrained_fixtures import any_models

    with any_models(tmp_path, ["marian"], "opus") as root:
        folder = root / "opus-marian"
        monkeypatch.setattr(hub_source, "prepare", lambda scheme, name, progress=None: folder)
        hub_source._config.cache_clear(), hub_source._tokenizer.cache_clear()
        try:
            spec = learn_tab.step_spec(Words(), STEP)
            assert str(spec) == STEP.spec and spec.config().family == "encdec" and spec.config().model_type == "marian"
        finally:
            hub_source._config.cache_clear(), hub_source._tokenizer.cache_clear()
    assert not infos
