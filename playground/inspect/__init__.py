"""Looking inside a model: a prompt in, plain numpy data out (``analysis``), head roles (``heads``),
generation with per-step records (``generation``), the position encodings' lab (``positions``),
one head's FlashAttention forward replayed tile by tile with its HBM traffic (``flash_replay``)."""
