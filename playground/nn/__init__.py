"""Attention building blocks: the attention module, its kernels, masks, position encodings and the KV cache.

Nothing here knows about a whole model: each piece takes tensors and a config and returns tensors.
"""
