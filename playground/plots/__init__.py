"""Figures: pure functions from plain data (numpy, lists) to Plotly figures, one module per family.

- ``attention``: the overview of every layer and head, one head, its mask and overlay, the block mask,
  attention by distance, the views beyond raw weights (logit lens, head ablation);
- ``generation``: the KV cache (or state) growing token by token, each step's attention over the cache;
- ``inside``: one head's steps and FlashAttention's replay of it (tiles, running max and sum, HBM traffic,
  the memory hierarchy);
- ``labs``: the KV-cache calculator's bars and bands, the position and kernel labs' matrices and lines;
- ``kv_lab``: the KV-cache lab's bytes against loss, its caches growing, the keys each policy kept;
- ``base``: what they share.

Attention weights use one colour scale from 0 to 1 with a colour bar; masks are two-coloured.
Token labels are escaped for Plotly's text renderer, and numbered so repeated tokens stay
distinct on categorical axes. Overviews are downsampled (max over blocks, said in the title)
so a long prompt stays light to send and to draw; a single head opens at full resolution.

Every builder takes ``words`` for the words it writes itself (axis titles, hover text, colour
bars): ``words(key, **params) -> str`` and ``words.render(value) -> str`` for titles and series
names. The default, ``ENGLISH``, writes the templates in ``WORDS``; the page passes its own
``Words``, which writes the same keys in the reader's language (its English *is* ``WORDS``).
Everything is importable from ``playground.plots`` itself.
"""
from .base import (
    English, safe, axis_labels, colour_axis, downsample_max, WEIGHT_SCALE, MASK_COLOURS, FONT, WORDS, ENGLISH)
from .attention import (
    overview, pooled_overview, overview_bytes, head, mask, block_grid, mask_overlay, distance_profile,
    logit_lens, layer_head_grid, FIT_SCALE_KEYS, OVERVIEW_WIDTH, BLOCK_STATES, BLOCK_COLOURS)
from .generation import kv_growth, step_rows
from .labs import variant_label, kv_whatif, kv_by_layer_kind, matrix, lines, LAYER_KIND_COLOURS
from .kv_lab import kv_tradeoff, kv_policy_growth, kv_kept_map, POLICY_COLOURS
from .inside import (
    step_matrix, tile_states, tile_grid, replay_step, traffic, memory_hierarchy, TILE_STATES, TILE_COLOURS)

__all__ = [
    "English", "safe", "axis_labels", "colour_axis", "downsample_max", "WEIGHT_SCALE", "MASK_COLOURS", "FONT",
    "WORDS", "ENGLISH", "overview", "pooled_overview", "overview_bytes", "head", "mask", "block_grid",
    "mask_overlay", "distance_profile", "logit_lens", "layer_head_grid", "FIT_SCALE_KEYS", "OVERVIEW_WIDTH",
    "BLOCK_STATES", "BLOCK_COLOURS", "kv_growth", "step_rows", "variant_label", "kv_whatif", "kv_by_layer_kind",
    "matrix", "lines", "LAYER_KIND_COLOURS", "step_matrix", "tile_states", "tile_grid", "replay_step", "traffic",
    "memory_hierarchy", "TILE_STATES", "TILE_COLOURS", "kv_tradeoff", "kv_policy_growth", "kv_kept_map",
    "POLICY_COLOURS"]
