"""The package's import graph has no cycles: every module can be read (and imported)
after the modules it imports, which keeps each one a room a reader can hold in mind.

Edges come from every ``import`` statement in a module, at the top or inside a function
(a function-level import is still a dependency); ``from . import x`` points at the
submodule x when it exists, else at the package. A package's ``__init__`` re-exporting
its own submodules is not a cycle (the submodules do not import the package back)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sgdsde"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    root = base[: len(base) - (node.level - 1)]
                    module = ".".join(root + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    targets.append(sub if sub in files else module)
            for target in targets:
                while target and target not in files:  # "a.b.c" where only "a.b" is a module
                    target = target.rpartition(".")[0]
                if target and target != name and not (is_package and target.startswith(name + ".")):
                    graph[name].add(target)
    return graph


def _find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    graph = _graph()
    # the root package imports its public modules; a module importing the root package back
    # ("import sgdsde", "from .. import x" resolves to the submodule) would be a cycle
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_graph_sees_the_imports():
    """The walker is not vacuous: it finds known dependencies, function-level ones too."""
    graph = _graph()
    assert "sgdsde.simulation" in graph["sgdsde.runner"]
    assert "sgdsde._checks" in graph["sgdsde.simulation"]
    assert "sgdsde.curvature" in graph["sgdsde.observers.measures"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_lazy_modules_are_listed_by_dir():
    """Notebook tab completion: every lazily loaded module appears in dir(sgdsde)."""
    import sgdsde as sd

    names = dir(sd)
    for name in sd._LAZY:
        assert name in names, name
    assert "run" in names and "Problem" in names
