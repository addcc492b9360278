"""Looking inside a model: a prompt in, plain numpy data out (``analysis``), head roles (``heads``),
generation with per-step records (``generation``), the position encodings' lab (``positions``),
one head's computation step by step with the model's own numbers (``step_through``), FlashAttention
replayed tile by tile with its memory traffic (``flash_replay``), and beyond raw weights:
value-weighted norms and attention rollout (``attribution``), the logit lens (``logit_lens``) and
head ablation (``ablation``), which read a model through hooks (``hooks``)."""
