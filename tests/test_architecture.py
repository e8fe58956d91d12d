"""The layout holds: no import cycle in grpo_sim (top-level and function-level imports alike, and modules imported
by a literal name through ``importlib.import_module`` / ``__import__``), and the core algorithm imports nothing from
the layers above it (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "grpo_sim"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


#: functions that import a module named by a string: ``importlib.import_module(NAME)``, ``import_module(NAME)``,
#: ``__import__(NAME)``
BY_NAME_IMPORTERS = ("import_module", "__import__")


def _by_name_import(node: ast.Call, module: str, is_package: bool) -> ast.Import | None:
    """An ``import NAME`` statement for a call that imports a module named by a string literal (relative names
    resolved against a literal package, ``__package__`` or this module's package), else None."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in BY_NAME_IMPORTERS or not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    name = first.value
    if name.startswith("."):
        anchor = node.args[1] if len(node.args) > 1 and called == "import_module" else None
        anchor = next((k.value for k in node.keywords if k.arg == "package"), anchor)
        if isinstance(anchor, ast.Constant) and isinstance(anchor.value, str):
            package = anchor.value
        else:  # __package__, or no anchor at all: this module's own package
            package = module if is_package else module.rpartition(".")[0]
        level = len(name) - len(name.lstrip("."))
        base = package.split(".")[: len(package.split(".")) - (level - 1)]
        name = ".".join(base + ([name.lstrip(".")] if name.lstrip(".") else []))
    return ast.Import(names=[ast.alias(name=name)])


def _imports(tree: ast.AST, module: str = "", is_package: bool = False):
    """Every import statement, however deeply nested, except those under ``if TYPE_CHECKING:``; an import of a
    module named by a string literal (``importlib.import_module("grpo_sim.demo")``, ``__import__(...)``) counts as
    an ``import`` statement of that name."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.Call):
            by_name = _by_name_import(node, module, is_package)
            if by_name is not None:
                yield by_name
        stack.extend(ast.iter_child_nodes(node))


def import_graph(unresolved: list[str] | None = None) -> dict[str, set[str]]:
    """module -> the grpo_sim modules it imports (a package stands for its __init__; importing a.b.c does not
    count as importing a.b, which Python runs first anyway). Imports of grpo_sim modules that do not exist are
    appended to ``unresolved``."""
    files = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path)), name, is_package):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                if unresolved is not None:
                    unresolved += [
                        f"{name}: import {t}" for t in targets if t.startswith("grpo_sim") and t not in files
                    ]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.startswith("grpo_sim") and source not in files and unresolved is not None:
                    unresolved.append(f"{name}: from {'.' * node.level}{node.module or ''} -> no module {source}")
                submodules = [f"{source}.{alias.name}" for alias in node.names]
                # ``from pkg import submodule`` imports the submodule; ``from module import name`` the module
                targets = [t for t in submodules if t in files] or [source]
                targets += [source] if any(t not in files for t in submodules) else []
            for target in targets:
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]  # an attribute of a module, not a module
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, for the failure message."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    return sorted(component)


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]


def test_imports_by_name_count_as_imports():
    """``importlib.import_module`` / ``__import__`` with a literal name import that module (issue 21: the sources
    registry imported the demo by name, a circle the statement-only scan did not see)."""
    code = """
import importlib
from importlib import import_module

def load():
    importlib.import_module("grpo_sim.demo")
    import_module(".rewards", __package__)
    import_module("..data", package="grpo_sim.eval")
    __import__("grpo_sim.runner.start")
    importlib.import_module(computed_name)  # not a literal: cannot be known, not counted
"""
    found = [alias.name for node in _imports(ast.parse(code), "grpo_sim.sources") for alias in node.names]
    assert sorted(n for n in found if n.startswith("grpo_sim")) == [
        "grpo_sim.data",
        "grpo_sim.demo",
        "grpo_sim.rewards",
        "grpo_sim.runner.start",
    ]


def test_every_grpo_sim_import_names_an_existing_module():
    unresolved: list[str] = []
    import_graph(unresolved)
    assert not unresolved, "\n".join(unresolved)


def test_grpo_sim_has_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


#: helpers any layer may use; they import no other grpo_sim module
BASE = (
    "grpo_sim.io",
    "grpo_sim.distributed",
    "grpo_sim.signals",
    "grpo_sim.validation",
    "grpo_sim.progress",
    "grpo_sim.openai_http",
    "grpo_sim.memory",
)
#: the algorithm: imports nothing above it
CORE = (
    "grpo_sim.similarity",
    "grpo_sim.rewards",
    "grpo_sim.advantages",
    "grpo_sim.sampler",
    "grpo_sim.trainer",
    "grpo_sim.reward_terms",
    "grpo_sim.reward_functions",
    "grpo_sim.trl_internals",
    "grpo_sim.weight_sync",
    "grpo_sim.vllm_sync",
)
#: recipes, planning, runs, sweeps and the command line: nothing below imports them
RUN = (
    "grpo_sim.recipe",
    "grpo_sim.plan",
    "grpo_sim.plan_memory",
    "grpo_sim.runner",
    "grpo_sim.cli",
    "grpo_sim.train",
    "grpo_sim.sweep",
    "grpo_sim.sources",
    "grpo_sim.trl_config",
    "grpo_sim.sft",
)

#: the embedded demo: uses the public APIs of everything above; nothing but the command line imports it
DEMO = ("grpo_sim.demo",)


def _in(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in layer)


def test_layers_import_only_downwards():
    graph = import_graph()
    wrong = []
    for module, imported in sorted(graph.items()):
        if _in(module, BASE):
            allowed = BASE
        elif _in(module, CORE):
            allowed = BASE + CORE
        else:
            continue
        wrong += [f"{module} -> {target}" for target in sorted(imported) if not _in(target, allowed)]
    for module, imported in sorted(graph.items()):
        if _in(module, ("grpo_sim.data", "grpo_sim.eval", "grpo_sim.models")):
            wrong += [f"{module} -> {target}" for target in sorted(imported) if _in(target, RUN + DEMO)]
        if not _in(module, DEMO + ("grpo_sim.cli",)):  # the demo sits on top: only the command line starts it
            wrong += [f"{module} -> {target}" for target in sorted(imported) if _in(target, DEMO)]
        if _in(module, ("grpo_sim.data",)):
            wrong += [f"{module} -> {target}" for target in sorted(imported) if _in(target, ("grpo_sim.eval",))]
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(wrong)
