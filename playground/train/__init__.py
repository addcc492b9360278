"""Training: the corpus and synthetic tasks (``data``), the tokenizer, the training loop with its
checkpoints (``loop``) and evaluation (``evaluate``)."""
