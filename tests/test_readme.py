"""The README's notebook example is code a reader will paste: it runs here, as written."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_blocks_under(heading: str) -> list[str]:
    """The ```python blocks of the README's '## heading' section, in order."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, f"no python block under '## {heading}'"
    return blocks


def test_the_notebook_example_runs_and_shows_what_it_says():
    namespace: dict = {}
    first = python_blocks_under("Use the library from a notebook")[0]
    exec(compile(first, "README.md", "exec"), namespace)
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


def test_the_inside_one_head_example_runs_on_the_same_model():
    namespace: dict = {}
    first, second = python_blocks_under("Use the library from a notebook")[:2]
    exec(compile(first, "README.md", "exec"), namespace)
    exec(compile(second, "README.md", "exec"), namespace)
    model, ids = namespace["model"], namespace["ids"]
    T, cfg = len(ids), model.cfg
    steps = namespace["steps"]
    np.testing.assert_allclose(steps["weights"], namespace["result"].weights("self")[1, 2], atol=1e-5)
    assert steps.kv_head == 2 // (cfg.n_heads // cfg.n_kv_heads) and 2 in steps.shared_by
    assert namespace["flow"].shape == (cfg.n_layer, T, T)
    assert namespace["lens"].top_ids.shape == (cfg.n_layer, T, 3)
    assert namespace["ablation"].d_loss.shape == (cfg.n_layer, cfg.n_heads)
    run = namespace["run"]
    assert run.max_abs_diff < 1e-12 and run.skipped > 0
