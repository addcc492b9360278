"""The README's notebook example is code a reader will paste: it runs here, as written."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_block_under(heading: str) -> str:
    """The first ```python block after a '## heading' line of the README."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, f"no python block under '## {heading}'"
    return match.group(1)


def test_the_notebook_example_runs_and_shows_what_it_says():
    namespace: dict = {}
    exec(compile(python_block_under("Use the library from a notebook"), "README.md", "exec"), namespace)
    model, result, gen, tok, ids = (namespace[k] for k in ("model", "result", "gen", "tok", "ids"))
    cfg = model.cfg
    weights = result.weights("self")
    assert weights.shape == (cfg.n_layer, cfg.n_heads, len(ids), len(ids))
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)       # softmax rows
    assert result.maps[0].mask.shape == (len(ids), len(ids)) and not result.maps[0].mask[0, 1]  # causal
    assert len(gen.tokens) == 20 and isinstance(tok.decode(gen.tokens), str)
    # the cache really holds K/V of every position the model has seen: prompt + all new tokens but the last
    per_position = 2 * cfg.n_layer * cfg.n_kv_heads * cfg.head_dim * 4
    assert gen.steps[-1].cache_bytes == per_position * (len(ids) + 19)
    fig = namespace["fig"]
    assert fig.layout.title.text.startswith("gqa") and fig.layout.meta["rows"] == len(ids)  # one cell per token
