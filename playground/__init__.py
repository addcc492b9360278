"""Attention Playground: small attention models whose every weight you can see.

The notebook API (names are stable)::

    from playground import ModelConfig, build_model, analyze, generate, plots, zoo, Tokenizer
    model = build_model(ModelConfig(family="decoder", n_kv_heads=2, position="alibi"))
    result = analyze(model, [5, 6, 7, 8])        # numpy weights, masks, kernel that ran
    result.weights("self").shape                 # (n_layer, n_heads, T, T)
    generate(model, [5, 6, 7], 16).tokens
    value_norms(model, [5, 6, 7, 8]).per_layer   # ||sum_h A^h_ij f_h(x_j)|| (Kobayashi et al. 2020)
    rollout(result.weights("self"), without_first=True)[-1]  # attention rollout (Abnar & Zuidema 2020)
    logit_lens(model, [5, 6, 7, 8], k=3).top_ids  # each layer's top next-token guesses
    ablate_heads(model, [5, 6, 7, 8], mode="mean").d_loss  # (n_layer, n_heads) loss change per ablated head
    model, tok = load_pretrained("openai-community/gpt2")  # a Hub id or a folder: GPT-2, Llama, Qwen2, Mistral, Mamba

The layers, lowest first (imports point down only; ``tests/test_architecture.py`` checks it):
``config`` -> ``nn`` (attention building blocks) -> ``models`` -> ``train`` -> ``zoo`` ->
``inspect`` and ``plots`` -> ``bench`` -> ``ui`` (the page).
"""
from playground import plots, zoo
from playground.config import PRESETS, ModelConfig, from_name
from playground.inspect.ablation import Ablation, ablate_heads, heads_ablated
from playground.inspect.analysis import Analysis, AttentionMap, analyze
from playground.inspect.attribution import ValueNorms, rollout, value_norms
from playground.inspect.generation import DecodeStep, Generation, generate, stream
from playground.inspect.logit_lens import LogitLens, logit_lens
from playground.models import build_model
from playground.models.checkpoint import load_model, save_model
from playground.models.pretrained import load_pretrained
from playground.models.transformer import EncoderDecoder, TransformerLM
from playground.nn.cache import KVCache, kv_bytes_per_token, kv_cache_bytes
from playground.nn.kernels import KernelUnavailable, probe
from playground.train.tokenizer import Tokenizer

__all__ = [
    "Analysis", "AttentionMap", "analyze", "KVCache", "kv_bytes_per_token", "kv_cache_bytes",
    "load_model", "save_model", "PRESETS", "ModelConfig", "from_name", "DecodeStep", "Generation",
    "generate", "stream", "KernelUnavailable", "probe", "EncoderDecoder", "TransformerLM", "build_model",
    "plots", "zoo", "Tokenizer", "ValueNorms", "value_norms", "rollout", "LogitLens", "logit_lens",
    "Ablation", "ablate_heads", "heads_ablated", "load_pretrained",
]
