"""Imports between taskforce's top-level packages: a table of counts, and the edges that
run against the layers. For the before/after picture of the import structure (see
docs/architecture.md); `make lint` (lint-imports) is what enforces the contract.

    python tools/import_graph.py            # the table
    python tools/import_graph.py --edges    # and every module-to-module import that crosses
"""

from __future__ import annotations

import argparse
from collections import Counter

import grimp

# Lower number, lower layer; siblings share one. The top-level modules (taskforce,
# taskforce.__main__, lean_asyncio) stand apart.
LAYERS = {
    "core": 0,
    "config": 1,
    "watch": 1,
    "runtime": 2,
    "api": 3,
    "fleet": 3,
    "app": 4,
    "cli": 5,
}


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="list the crossing imports too")
    args = parser.parse_args()
    graph = grimp.build_graph("taskforce", cache_dir=None)
    counts: Counter[tuple[str, str]] = Counter()
    edges: list[tuple[str, str]] = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            source, target = package(importer), package(imported)
            if source != target:
                counts[source, target] += 1
                edges.append((importer, imported))
    packages = sorted({p for pair in counts for p in pair}, key=lambda p: LAYERS.get(p, 9))
    width = max(len(p) for p in packages)
    print("imports from the row's package to the column's (module pairs)")
    print(" " * width + "".join(f" {p:>{width}}" for p in packages))
    for source in packages:
        cells = "".join(f" {counts.get((source, t), '') or '.':>{width}}" for t in packages)
        print(f"{source:>{width}}{cells}")
    upward = {
        pair: n
        for pair, n in counts.items()
        if pair[0] in LAYERS and pair[1] in LAYERS and LAYERS[pair[0]] <= LAYERS[pair[1]]
    }
    print(f"\nimports running up or sideways between layers: {sum(upward.values())}")
    for (source, target), n in sorted(upward.items()):
        print(f"  {source} -> {target}: {n}")
    cycles = [(a, b) for (a, b) in counts if a < b and (b, a) in counts]
    print(f"package pairs importing each other: {len(cycles)}")
    for a, b in sorted(cycles):
        print(f"  {a} <-> {b}")
    components = [c for c in _cycles(graph) if len(c) > 1]
    print(f"import cycles between modules: {len(components)}")
    for component in components:
        print(f"  {' <-> '.join(sorted(component))}")
    if args.edges:
        print("\ncrossing imports:")
        for importer, imported in edges:
            print(f"  {importer} -> {imported}")
    return 0


def _cycles(graph: grimp.ImportGraph) -> list[set[str]]:
    """The strongly connected components of the module graph (Tarjan's, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


if __name__ == "__main__":
    raise SystemExit(main())
