"""The package's shape: one installed name, imports that point one way, a pipeline without a Redis client."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness import ROOT

FOLDERS = {"workers": "feedsift.workers", "models": "feedsift.models"}


def imports() -> dict[str, set[str]]:
    """Module -> the feedsift modules it imports anywhere in its body (lazy imports inside functions too)."""
    graph = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).glob("*.py"):
            name = f"{package}.{path.stem}" if path.stem != "__init__" else package
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("feedsift"):
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        found.add(full if Path(ROOT, *full.split(".")[1:]).with_suffix(".py").exists() else node.module)
                elif isinstance(node, ast.Import):
                    found |= {a.name for a in node.names if a.name.startswith("feedsift")}
            graph[name] = found - {name}
    return graph


def test_no_import_cycle():
    graph = imports()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt in graph and not state.get(nxt):
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])


def test_models_know_nothing_of_workers_redis_or_celery():
    for path in (ROOT / "models").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in names if m.split(".")[0] in ("redis", "celery", "kombu")}, path.name
        assert not {m for m in names if m.startswith("feedsift.workers")}, path.name


def test_pipeline_goes_through_store_and_index():
    source = (ROOT / "workers" / "pipeline.py").read_text()
    assert "ctx.redis" not in source and "import redis" not in source and "ctx.keys" not in source
