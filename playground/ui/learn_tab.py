"""The tour (Learn / 导览): the ideas behind attention, in the order of the study notes this project grew
from, one step each, from self-attention to Mamba and long sequences.

Each step is a few sentences in the reader's language, a formula where one helps, and **Show me**: it
sets the model controls and the prompt to the step's (the fields of a share link: a model spec and a
prompt, read by the same ``controls_for``), opens the tab that shows the idea and presses that tab's own
button, so what appears is the live view of a shipped model with the page's own numbers, which the
reader can then change. A step may name a pretrained model first (the translation step: a real Marian model):
Show me opens it as the Open button does, with its progress, and falls back to a shipped model, saying why,
where it cannot be opened (no network, a budget too small).
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from playground.zoo import ModelSpec, hub_source
from .controls import Controls, controls_for, specific_models
from .progress import download_bar
from .lang import Localized, Words, t

# the prompts Show me sets: English, the language the shipped models were trained on
PROMPTS = {"short": "The cat sat on the mat",
           "story": "Once upon a time there was a little cat. The cat sat on the mat, and the cat was happy.",
           "translate": "The little cat sat on the mat, and the cat was happy."}
LONG_PROMPT_WORDS = 2800  # about 4,100 tokens of the shipped tokenizer: what a long prompt costs, measured
# the formulas a step's text places at {formula} (LaTeX: the same in every language, kept out of the catalogue,
# whose braces are placeholders)
FORMULAS = {
    "self_attention": r"\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\left(\frac{QK^\top}{\sqrt{d}} + M\right) V",
    "kv_cache": r"M_{\mathrm{KV}} = 2 \, L \, n_{kv} \, d_{head} \, T \, b",
    "positions": r"q_m^\top k_n = \mathrm{Re}\left[(W_q x_m)(W_k x_n)^* e^{i(m-n)\theta}\right]",
    "long": r"w_{ij} = \exp\left(\frac{q_i \cdot k_j}{\sqrt{d}} - \mathrm{lse}_i\right)",
}
LATEX = [{"left": "$$", "right": "$$", "display": True}]


@dataclass(frozen=True)
class Step:
    """One idea: its catalogue keys ``learn.<key>.title`` / ``.body``, the model and prompt Show me sets, the tab
    (and lab) it opens, the element id of the button it presses there, and the attention view's options."""

    key: str
    spec: str
    tab: str
    button: str | None
    prompt: str | None = None   # a key of PROMPTS; None: the reader's prompt stays
    lab: str | None = None
    group_kv: bool = False
    long: bool = False          # the prompt repeated to about LONG_PROMPT_WORDS words
    fallback: str | None = None  # a shipped model's spec, shown where ``spec`` (a pretrained one) cannot be opened


STEPS = (
    Step("self_attention", "zoo:baseline", "inside", "inside-run", prompt="short"),
    Step("multi_head", "zoo:induction", "heads", "heads-score"),
    Step("kv_cache", "zoo:baseline", "generate", "generate-run", prompt="story"),
    Step("mqa_gqa", "zoo:gqa", "attention", "attention-analyze", prompt="story", group_kv=True),
    Step("flash", "zoo:baseline", "inside", "inside-run", prompt="short"),
    Step("masks", "zoo:encdec", "attention", "attention-analyze", prompt="story"),
    Step("positions", "zoo:baseline", "labs", None, lab="positions"),
    Step("recurrent", "zoo:mamba", "generate", "generate-run", prompt="story"),
    Step("long", "zoo:baseline", "attention", "attention-analyze", prompt="story", long=True),
    Step("translation", "hf:Helsinki-NLP/opus-mt-en-zh", "generate", "generate-run", prompt="translate",
         fallback="zoo:encdec"),
    Step("kv_lab", "zoo:baseline", "labs", "kvlab-run", lab="kvlab"),
)


def step_spec(w: Words, step: Step, progress=None) -> ModelSpec:
    """The model a step shows: its own spec, opened (downloaded with ``progress``) when it is a pretrained one, or
    its fallback with a message saying why the first could not be opened."""
    spec = ModelSpec.parse(step.spec)
    if step.fallback is None or spec.scheme == "zoo":
        return spec
    try:
        hub_source.prepare(spec.scheme, spec.name, progress=progress)
        spec.config(), spec.tokenizer()
    except ValueError as e:
        w.info("info.tour_fallback", spec=str(spec), reason=w.render(e), fallback=step.fallback)
        return ModelSpec.parse(step.fallback)
    return spec


def step_prompt(step: Step) -> str | None:
    if step.prompt is None:
        return None
    text = PROMPTS[step.prompt]
    if step.long:
        words = text.split()
        text = " ".join(words * (LONG_PROMPT_WORDS // len(words) + 1))
    return text


@dataclass
class LearnTab:
    buttons: list[gr.Button]

    def wire(self, controls: Controls, prompt: gr.Textbox, main_tabs: gr.Tabs, lab_tabs: gr.Tabs,
             group_kv: gr.Checkbox) -> None:
        """Each Show me: the controls, the prompt and the tab set to the step's, then the tab's own button."""
        outputs = [*controls.model, prompt, main_tabs, lab_tabs, group_kv]
        for step, button in zip(STEPS, self.buttons):
            def show(request: gr.Request, step=step, progress=gr.Progress()):
                spec = step_spec(Words(request), step, download_bar(progress))
                chosen = controls_for(spec)
                task = (gr.update(choices=specific_models(str(spec)), value=str(spec))
                        if spec.scheme in ("hf", "local") else chosen["task"])
                text = step_prompt(step)
                return [chosen["family"], chosen["variant"], chosen["position"], task, chosen["fallback"],
                        gr.skip() if text is None else text, gr.Tabs(selected=step.tab),
                        gr.Tabs(selected=step.lab) if step.lab else gr.skip(), step.group_kv]

            event = controls.then_describe(button.click(show, None, outputs, api_visibility="private"))
            if step.button:
                # the tab's own button, pressed once the controls show the step's model and the note says it
                event.then(None, None, None, js=f"() => setTimeout(() => document.getElementById({step.button!r})"
                                                 f".click(), 300)")


def step_text(w: Words, step: Step) -> str:
    """A step's text in the reader's language, with its formula (if it has one) in display LaTeX."""
    formula = FORMULAS.get(step.key)
    return w(f"learn.{step.key}.body", formula=f"$${formula}$$" if formula else "")


def build_learn_tab(localized: Localized) -> LearnTab:
    gr.Markdown(t("learn.intro"))
    buttons = []
    for step in STEPS:
        with gr.Group(elem_classes="learn-step"):
            gr.Markdown(t(f"learn.{step.key}.title"), elem_id=f"learn-{step.key}-title")
            body = gr.Markdown(latex_delimiters=LATEX, elem_id=f"learn-{step.key}-text")
            localized.add(body, lambda w, _, step=step: step_text(w, step))  # written by the server: LaTeX braces
            buttons.append(gr.Button(t("learn.show_me"), size="sm", variant="secondary", elem_id=f"learn-{step.key}"))
    return LearnTab(buttons)
