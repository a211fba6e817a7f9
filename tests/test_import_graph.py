"""No import circle between the project's modules: the graph of who imports whom is acyclic.

The graph is read from the source with `ast`: every `import` and `from ... import` statement of a
module of the four packages, at module level or inside a function (a deferred import that closes a
circle is still a circle in the design), with `from package import name` pointing at the submodule
`package.name` when there is one. The implicit import of a module's parent package is not an edge
(every `__init__` that imports its own submodules would otherwise be a circle).
"""

import ast
import graphlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("ef_keras", "deploy", "search", "android_ios_bench")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its source)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in files else node.module
                           for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def test_the_graph_sees_the_project_imports():
    """The reader finds deferred and `from package import module` imports (else the acyclic check means nothing)."""
    graph = import_graph()
    assert "ef_keras.errors" in graph["ef_keras.checks"]  # module level
    assert "ef_keras.registry" in graph["deploy.convert"]  # inside a function
    assert "ef_keras.timing" in graph["android_ios_bench.host.harness"]  # `from ef_keras import timing`


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_families_share_only_the_base_and_the_registry_imports_none():
    """V1 never imports V2 and V2 never imports V1: what both use is `ef_keras.models` (plan, config, layers, base)."""
    graph = import_graph()
    families = ("ef_keras.models.efficientformer", "ef_keras.models.efficientformer_v2")
    for family in families:
        for other in set(families) - {family}:
            crossing = {m: sorted(t for t in edges if _in(t, other)) for m, edges in graph.items() if _in(m, family)}
            assert not any(crossing.values()), {m: t for m, t in crossing.items() if t}
    assert not [t for t in graph["ef_keras.registry"] if any(_in(t, f) for f in families)]


def _assert_acyclic(graph):
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import circle (each imports the next): {' -> '.join(reversed(e.args[1]))}") from None


def test_no_import_circle():
    _assert_acyclic(import_graph())
