"""The folder tree is the architecture: imports point one way, down the layers, with no cycle.

Every module's imports are read with ``ast`` (nothing is imported). A module may import its own
package and anything in a lower layer; an import that points up a layer, or a cycle between
modules, fails with the offending edge named.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "playground"

# lowest first: a module may import from its own layer (same package) or any layer below
LAYERS = [
    ("playground.config", "playground.errors", "playground.paths"),
    ("playground.nn",),
    ("playground.models",),
    ("playground.serving",),
    ("playground.train",),
    ("playground.zoo",),
    ("playground.inspect", "playground.plots"),
    ("playground.ui",),
    ("playground.bench",),  # benchmarks measure the page and the library; neither imports them
]
# entry points sit above everything: command lines, the package's public names, the app and
# pretrained, long-prompt and GPU benchmarks, which drive the page like a browser does, and the Space publisher
ENTRY_POINTS = ("playground", "playground.bench.app", "playground.bench.pretrained", "playground.bench.long",
                "playground.bench.gpu", "playground.publish")
UI_ONLY = ("gradio", "playground.ui")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def is_entry_point(module: str) -> bool:
    return module in ENTRY_POINTS or module.endswith(".__main__")


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def imports_of(module: str) -> set[str]:
    """Absolute names this module imports: 'from a.b import c' gives a.b and a.b.c (if c is a module)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return out


def internal_edges() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package's own parents excluded: Python imports them first)."""
    return {m: {t for t in imports_of(m) if t in MODULES and t != m and not m.startswith(t + ".")} for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        if not is_entry_point(module):
            layer_of(module)


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in internal_edges().items():
        if is_entry_point(module):
            continue
        upward += [f"{module} -> {t}" for t in targets if not is_entry_point(t) and layer_of(t) > layer_of(module)]
        upward += [f"{module} -> {t} (an entry point)" for t in targets if is_entry_point(t) and t != "playground"]
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_nothing_below_the_ui_imports_gradio_or_the_translations():
    offenders = [f"{m} -> {t}" for m in MODULES if not (is_entry_point(m) or m.startswith("playground.ui"))
                 for t in imports_of(m) if t.split(".")[0] == "gradio" or t.startswith("playground.ui")]
    assert not offenders, offenders


def test_no_import_cycles():
    graph = internal_edges()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("edge, expected", [
    ({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": set()}, False),
])
def test_the_cycle_check_finds_a_cycle(edge, expected, monkeypatch):
    """The check above is only worth something if it fails on a cycle: feed it one."""
    monkeypatch.setattr(sys.modules[__name__], "internal_edges", lambda: edge)
    if expected:
        with pytest.raises(AssertionError, match="import cycles"):
            test_no_import_cycles()
    else:
        test_no_import_cycles()


def test_an_upward_import_is_caught(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "internal_edges",
                        lambda: {"playground.nn.cache": {"playground.ui.i18n"}})
    with pytest.raises(AssertionError, match="playground.nn.cache -> playground.ui.i18n"):
        test_imports_point_down_the_layers()


MAX_LINES = 400


def test_no_module_is_over_400_lines():
    """A module over ``MAX_LINES`` does more than one job: split it by job, into modules named for what they hold."""
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_function_rebinds_module_state():
    """Module-level state lives in one named object (``serving.gpu_call.DOOR``, ``nn.flex.KERNEL``, the caches),
    never in globals a function rebinds: no ``global`` statement anywhere in the package."""
    found = [f"{name}:{node.lineno} global {', '.join(node.names)}" for name, path in MODULES.items()
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Global)]
    assert not found, f"global statements: {found}"


MUTABLE_CALLS = ("dict", "list", "set", "OrderedDict", "defaultdict", "WeakSet", "WeakValueDictionary", "Event")


def test_module_state_lives_in_registries_named_for_what_they_hold():
    """A module-level dict, list, set or event is a registry or a table, named in capitals for what it holds
    (``nn.flex.KERNEL``, ``zoo.hub_source.FOLDERS``): a lower-case global that code mutates is state behind the
    code's back. A lock that guards a registry is not state; ``__all__`` is not either."""
    found = []
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            called = value.func.attr if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) else \
                value.func.id if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) else None
            if not (isinstance(value, (ast.Dict, ast.List, ast.Set)) or called in MUTABLE_CALLS):
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id != "__all__" and not target.id.isupper():
                    found.append(f"{name}:{node.lineno} {target.id}")
    assert not found, f"module-level mutable state outside a named registry: {found}"
