"""Attention building blocks: the attention module, its kernels, masks, position encodings, the KV cache
and the recorder that attention layers write their weights into when asked.

Nothing here knows about a whole model: each piece takes tensors and a config and returns tensors.
"""
