"""``python -m playground.zoo``: the README's zoo table from the cards (``--timing`` also times each
entry's training step now, ``--json`` prints the rows); ``python -m playground.zoo build [NAME ...]``
trains the entries."""
import json
import sys

from playground.zoo.build import step_seconds, train_zoo
from playground.zoo.registry import available, markdown_table, table

args = sys.argv[1:]
if args[:1] == ["build"]:
    train_zoo([a for a in args[1:] if not a.startswith("--")] or None, force="--force" in args)
elif "--json" in args:
    print(json.dumps(table(), indent=2))
else:  # --timing: run it with nothing else on the machine
    timings = {name: step_seconds(name) for name in available()} if "--timing" in args else None
    print(markdown_table(timings))
