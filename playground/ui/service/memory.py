"""The server's memory as one check (``serving.memory_ledger.LEDGER``): what it counts, in the order it frees.

Stored analyses go first when room is needed (any of them is computed again on demand), then loaded weights
(reloaded on demand; those a running request still uses stay counted until it ends); the timelines in visitors'
sessions are counted and never taken from them. Loads of weights and analyses are admitted by the stores
themselves (their ``admit``); a generation, an export and a kernel-lab run ask ``admit`` before they allocate.
"""
from __future__ import annotations

from playground.serving.memory_ledger import LEDGER
from playground.ui.service.analyses import ANALYSES
from playground.ui.service.loading import WEIGHTS
from playground.ui.service.timelines import TIMELINES

LEDGER.register("analyses", ANALYSES.in_use, ANALYSES.free_one)
LEDGER.register("weights", WEIGHTS.in_use, WEIGHTS.free_one)
LEDGER.register("timelines", TIMELINES.total)

admit = LEDGER.admit
