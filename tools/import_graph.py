"""Imports between taskforce's top-level packages: a table of counts, and the edges that
run against the layers. For the before/after picture of the import structure (see
docs/architecture.md); `make lint` (lint-imports) is what enforces the contract.

    python tools/import_graph.py            # the table
    python tools/import_graph.py --edges    # and every module-to-module import that crosses
    python tools/import_graph.py --inside runtime   # the table of one package's parts
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


def package(module: str, inside: str | None = None) -> str | None:
    """The top-level package of `module` (or, `inside` a package, its part there: a
    subpackage or module; None for a module outside it)."""
    parts = module.split(".")
    if inside is None:
        return parts[1] if len(parts) > 1 else "(root)"
    if parts[1:2] != [inside]:
        return None
    return parts[2] if len(parts) > 2 else "(root)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="list the crossing imports too")
    parser.add_argument("--inside", metavar="PACKAGE", help="between the parts of this package")
    args = parser.parse_args()
    if args.inside is not None:
        return _inside(args.inside, args.edges)
    graph = grimp.build_graph("taskforce", cache_dir=None)
    counts: Counter[tuple[str, str]] = Counter()
    edges: list[tuple[str, str]] = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            source, target = package(importer), package(imported)
            if source is not None and target is not None and source != target:
                counts[source, target] += 1
                edges.append((importer, imported))
    packages = sorted({p for pair in counts for p in pair}, key=lambda p: (LAYERS.get(p, 9), p))
    print("imports from the row's package to the column's (module pairs)")
    _print_table(packages, counts)
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


def _inside(name: str, list_edges: bool) -> int:
    """The table of imports between the parts of taskforce.`name` (its subpackages and
    modules), with the part pairs that import each other."""
    graph = grimp.build_graph("taskforce", cache_dir=None)
    counts: Counter[tuple[str, str]] = Counter()
    edges: list[tuple[str, str]] = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            source, target = package(importer, name), package(imported, name)
            if source is not None and target is not None and source != target:
                counts[source, target] += 1
                edges.append((importer, imported))
    parts = sorted({p for pair in counts for p in pair})
    print(f"imports inside taskforce.{name}, from the row's part to the column's")
    _print_table(parts, counts)
    cycles = [(a, b) for (a, b) in counts if a < b and (b, a) in counts]
    print(f"\npart pairs importing each other: {len(cycles)}")
    for a, b in sorted(cycles):
        print(f"  {a} <-> {b}")
    if list_edges:
        print("\nimports between parts:")
        for importer, imported in edges:
            print(f"  {importer} -> {imported}")
    return 0


def _print_table(names: list[str], counts: Counter[tuple[str, str]]) -> None:
    width = max(len(n) for n in names)
    print(" " * width + "".join(f" {n:>{len(n)}}" for n in names))
    for source in names:
        cells = "".join(f" {counts.get((source, t), '') or '.':>{len(t)}}" for t in names)
        print(f"{source:>{width}}{cells}")


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
