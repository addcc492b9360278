"""Initial values: what an event handler returns, written into its output components while the page is built.

A page that opens with a view already in its config draws it as soon as the browser has the page, with no
event to queue, compute and send first. ``set_initial(outputs, returned)`` takes the list a handler returns
for ``outputs`` (plain values, ``gr.update(...)`` dicts, ``gr.skip()``) and makes each the component's
starting state, the way Gradio applies the same return value to a session's copy of the page.
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from gradio.components import Component


def _is_update(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update"


def set_initial(outputs: Sequence[Component], returned: Sequence[Any]) -> None:
    """Make ``returned[i]`` the starting value (or props) of ``outputs[i]``; ``gr.skip()`` leaves one as it is."""
    if len(outputs) != len(returned):
        raise ValueError(f"{len(returned)} values for {len(outputs)} outputs")
    for component, value in zip(outputs, returned):
        changes = {k: v for k, v in value.items() if k != "__type__"} if _is_update(value) else {"value": value}
        if not changes:  # gr.skip()
            continue
        # the component as the same constructor arguments with these changes build it (choices normalised, the
        # value postprocessed), then its props and value carried over to the one already in the layout
        args = {**component.constructor_args, **changes}
        fresh = type(component)(**{**args, "render": False})
        for name in inspect.signature(type(component).__init__).parameters:
            if name not in ("self", "render", "key") and hasattr(fresh, name):
                setattr(component, name, getattr(fresh, name))
        component.constructor_args.update(changes)
