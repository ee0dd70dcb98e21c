"""The import graph runs one way: no cycles between files, no import from a lower layer to a higher one.

Layers, lowest first, one top-level folder each: the kernel (``orchestrator``), ``verifiers``,
``strategies``, the ``service``, the ``api``, the SDK (``ttc``), the ``harness``, and the command
line (``cli``) on top. Every ``import`` counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import is still a dependency. Since a folder is a layer, the
folder-level graph (what a drawing of the import graph by folder shows) runs one way too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [  # (name, top-level folder), lowest first
    ("kernel", "orchestrator"),
    ("verifiers", "verifiers"),
    ("strategies", "strategies"),
    ("service", "service"),
    ("api", "api"),
    ("sdk", "ttc"),
    ("harness", "harness"),
    ("command line", "cli"),
]
PACKAGES = tuple(folder for _, folder in LAYERS)
ORDER = [name for name, _ in LAYERS]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def layer_of(module: str) -> str:
    """A module's layer: the one of its top-level folder."""
    folder = module.split(".")[0]
    for name, layer_folder in LAYERS:
        if folder == layer_folder:
            return name
    raise AssertionError(f"{module} is in no layer")


def imports_of(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports; ``from package import name`` counts the submodule when it is one."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {module: imports_of(path, module, modules) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_layer_and_the_graph_is_not_empty() -> None:
    graph = import_graph()
    assert {"orchestrator.core.session", "strategies.stepwise", "cli"} <= set(graph)
    assert all(layer_of(module) in ORDER for module in graph)
    assert sum(len(targets) for targets in graph.values()) > 100


def test_every_top_level_folder_with_code_is_a_layer() -> None:
    """A new folder of code must take its place in the order (else its imports go unchecked)."""
    folders = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests", "benchmarks", "build"} and not path.parent.name.startswith(".")
    }
    assert folders == set(PACKAGES)


def test_no_import_cycles_between_files() -> None:
    assert cycles(import_graph()) == []


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    upward = [
        f"{source} ({layer_of(source)}) imports {target} ({layer_of(target)})"
        for source, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if ORDER.index(layer_of(target)) > ORDER.index(layer_of(source))
    ]
    assert upward == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """A kernel file importing a strategy (lazily, inside a function) is reported."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from strategies.stepwise import run_search\n")
    found = imports_of(source, "orchestrator.core.probe", project_modules())
    assert found == {"strategies.stepwise"}
    assert ORDER.index(layer_of("strategies.stepwise")) > ORDER.index(layer_of("orchestrator.core.probe"))
