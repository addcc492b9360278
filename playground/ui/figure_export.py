"""Figure downloads: every Plotly figure on the page saves as PNG or as SVG, at one chosen size.

``build_export_size`` draws the size row (width and height in px; empty: the figure's size on
screen). ``assets/js/figure_export.js`` puts a PNG and an SVG button in every figure's modebar
(in place of plotly's own PNG camera, which saves at the on-screen size only); each reads the row
when clicked and names the file after the figure's title.
"""
from __future__ import annotations

import gradio as gr

from playground.ui.i18n import LANGUAGES, text
from playground.ui.lang import t
from playground.ui.scripts import page_script

WIDTH_ID = "export-width"
HEIGHT_ID = "export-height"
MAX_PX = 8000  # a browser canvas refuses much more than this on a side
TITLES = {"png": "export.png", "svg": "export.svg"}  # modebar button -> its tooltip's key
SCRIPT = page_script("figure_export", exportWidthId=WIDTH_ID, exportHeightId=HEIGHT_ID, exportMax=MAX_PX,
                     exportTitles={lang: {fmt: text(lang, key) for fmt, key in TITLES.items()} for lang in LANGUAGES})


def build_export_size() -> tuple[gr.Number, gr.Number]:
    """The page-wide size of figure downloads; read in the browser only (no server event)."""
    with gr.Row(elem_classes="export-size"):
        gr.Markdown(t("export.size"), elem_classes="scope-note")
        width = gr.Number(None, label=t("export.width"), precision=0, minimum=1, maximum=MAX_PX, elem_id=WIDTH_ID)
        height = gr.Number(None, label=t("export.height"), precision=0, minimum=1, maximum=MAX_PX, elem_id=HEIGHT_ID)
    return width, height
