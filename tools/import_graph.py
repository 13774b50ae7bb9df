"""The import graph of a project's own packages, read from source with ``ast``.

Nothing is imported or executed. Every ``import`` and ``from ... import`` statement counts,
wherever it stands: at module level, under ``if TYPE_CHECKING:`` (a type-only import is a
dependency of the design all the same) and inside a function (a lazy import only moves the
dependency to run time). Relative imports are resolved against the importing module's package,
and ``from pkg import name`` points at the submodule ``pkg.name`` when there is one, else at
``pkg``.

Only imports of the project's own modules are edges. Like grimp (import-linter's graph), an
import of ``a.b.c`` is an edge to ``a.b.c`` only, not to the packages ``a`` and ``a.b`` whose
``__init__`` it also runs: a package that imports its own submodules is no cycle.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

#: where an import stands, as the reports say it
MODULE_LEVEL = ""
TYPE_ONLY = "under TYPE_CHECKING"
LAZY = "inside a function"


@dataclass(frozen=True, order=True)
class Import:
    """One import statement's edge: ``importer`` imports ``imported`` at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int
    context: str = MODULE_LEVEL

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def describe(self) -> str:
        note = f" ({self.context})" if self.context else ""
        return f"{self.where}: {self.importer} -> {self.imported}{note}"


class Graph:
    """Modules and the imports between them; ``edges[a][b]`` lists a's imports of b."""

    def __init__(self, modules: dict[str, str], imports: Iterable[Import]) -> None:
        self.modules = modules  # dotted name -> path relative to the root
        self.edges: dict[str, dict[str, list[Import]]] = {name: {} for name in modules}
        # a set: `from a import B, C` is one import of a, not two
        for imp in sorted(set(imports), key=lambda i: (i.importer, i.imported, i.line)):
            self.edges[imp.importer].setdefault(imp.imported, []).append(imp)

    def imports(self) -> list[Import]:
        """Every import statement's edge, in file and line order."""
        found = [imp for to in self.edges.values() for imps in to.values() for imp in imps]
        return sorted(found, key=lambda i: (i.path, i.line, i.imported))

    def first(self, importer: str, imported: str) -> Import:
        return self.edges[importer][imported][0]


class SourceError(Exception):
    """A module that cannot be read or parsed."""


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, str]:
    """Every module of ``packages`` (top-level names, as directories or single files under
    ``root``), as dotted name -> path relative to ``root``."""
    modules: dict[str, str] = {}
    for package in packages:
        base = root / package
        if base.with_suffix(".py").is_file():
            modules[package] = f"{package}.py"
            continue
        if not base.is_dir():
            raise SourceError(f"package '{package}' is not a directory or module under {root}")
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if all(part.isidentifier() for part in parts):
                modules[".".join(parts)] = path.relative_to(root).as_posix()
    return modules


def build_graph(root: Path, packages: Iterable[str]) -> Graph:
    modules = find_modules(root, packages)
    imports: list[Import] = []
    for name, rel in modules.items():
        path = root / rel
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError) as exc:
            raise SourceError(f"{rel}: cannot be parsed: {exc}") from None
        collector = _Collector(name, rel, path.name == "__init__.py", modules)
        collector.visit(tree)
        imports.extend(collector.found)
    return Graph(modules, imports)


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: str, is_package: bool, known: dict[str, str]) -> None:
        self.module = module
        self.path = path
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.found: list[Import] = []
        self._type_only = 0
        self._functions = 0

    # -- where we are ----------------------------------------------------------------------

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_only += 1
        for child in node.body:
            self.visit(child)
        self._type_only -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._in_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._in_function(node)

    def _in_function(self, node: ast.AST) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    # -- the imports -----------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(self._longest_known(alias.name), node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        if base is None:
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}" if base else alias.name
            if alias.name != "*" and submodule in self.known:
                self._add(submodule, node.lineno)
            else:
                self._add(self._longest_known(base), node.lineno)

    def _base(self, node: ast.ImportFrom) -> str | None:
        """The absolute name of the module an ``from ... import`` reads from."""
        if node.level == 0:
            return node.module or ""
        parts = self.package.split(".") if self.package else []
        up = node.level - 1
        if up >= len(parts):
            return None  # beyond the top-level package: Python refuses it too
        base = parts[: len(parts) - up]
        if node.module:
            base.append(node.module)
        return ".".join(base)

    def _longest_known(self, dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts:
            name = ".".join(parts)
            if name in self.known:
                return name
            parts.pop()
        return None

    def _add(self, target: str | None, line: int) -> None:
        if target is None or target == self.module:
            return
        context = TYPE_ONLY if self._type_only else LAZY if self._functions else MODULE_LEVEL
        self.found.append(Import(self.module, target, self.path, line, context))


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


# -- cycles ------------------------------------------------------------------------------


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan's algorithm,
    iterative), each sorted, in order of their first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph.edges):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def cycles_of(graph: Graph, component: list[str]) -> list[list[str]]:
    """Cycles through ``component`` that together use every import inside it: for each
    import not yet shown, the shortest cycle that closes through it. Each cycle is a list
    of modules whose last is its first (``a -> b -> a``)."""
    members = set(component)
    covered: set[tuple[str, str]] = set()
    cycles: list[list[str]] = []
    for source in component:
        for target in sorted(graph.edges[source]):
            if target not in members or (source, target) in covered:
                continue
            back = _shortest_path(graph, target, source, members)
            cycle = _rotate([source, *back])
            covered.update(pairwise(cycle))
            cycles.append(cycle)
    return cycles


def _shortest_path(graph: Graph, start: str, goal: str, members: set[str]) -> list[str]:
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            break
        for nxt in sorted(graph.edges[node]):
            if nxt in members and nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    path: list[str] = []
    step: str | None = goal
    while step is not None:
        path.append(step)
        step = came_from[step]
    return path[::-1]


def _rotate(cycle: list[str]) -> list[str]:
    """``[a, b, c, a]`` started at its smallest module, so one cycle always reads the same."""
    ring = cycle[:-1]
    at = ring.index(min(ring))
    ring = ring[at:] + ring[:at]
    return [*ring, ring[0]]
