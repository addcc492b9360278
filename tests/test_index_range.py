"""Sliders over layers, heads and decode steps stay valid for a model with one of them (a one-head Mamba
group, a one-layer model, a one-token generation): Gradio refuses a slider whose minimum equals its maximum."""
import gradio as gr
import pytest

from playground.ui.controls import index_range


@pytest.mark.parametrize("count", [1, 2, 12])
def test_the_update_builds_a_slider_for_any_count(count):
    update = index_range(count)
    update.pop("__type__", None)
    slider = gr.Slider(minimum=0, step=1, **update)  # what Gradio builds from the update after the event
    assert slider.value == 0
    assert slider.maximum == max(count - 1, 1)
    assert slider.interactive is (count > 1)  # one index: shown, locked at 0


def test_gradio_still_refuses_an_empty_range():
    # the reason for index_range: without it a one-head model's Analyze failed in the page
    with pytest.raises(ValueError, match="minimum must be less than maximum"):
        gr.Slider(minimum=0, maximum=0)
