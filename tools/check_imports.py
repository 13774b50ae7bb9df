"""The import-structure check: no import cycle, and the layer contracts of pyproject.toml.

Run ``python -m tools.check_imports`` (or ``make imports``) from the repository root. It reads
``[tool.backserv.imports]`` in ``pyproject.toml``::

    [tool.backserv.imports]
    packages = ["gateway", "providers"]      # the top-level packages to check

    [[tool.backserv.imports.contracts]]
    name = "faces reach the core through the service"
    modules = ["gateway.api"]                 # modules matching these ...
    forbidden = ["gateway.store"]             # ... must not import modules matching these
    allow = [                                 # except these imports, each with its reason
        { import = "gateway.api.health -> gateway.store.base", reason = "..." },
    ]

A pattern is a dotted module name that covers the module and everything under it
(``gateway.store`` covers ``gateway.store.sqlite``, not ``gateway.results``); ``*`` matches
any run of characters, dots included (``gateway.*.render``).

It builds the graph with ``tools.import_graph`` (type-only and function-local imports count)
and reports, with the file and line of every import involved:

- each import cycle among the packages' modules, as a chain ``a -> b -> a``;
- each import that breaks a contract and is not allowed;
- each allowance that no longer matches any import (a fixed seam: delete the allowance).

Exit status: 0 when all is clean, 1 when something is reported, 2 when the configuration or
a module cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from itertools import pairwise
from pathlib import Path
from typing import Any

from tools.import_graph import (
    Graph,
    Import,
    SourceError,
    build_graph,
    cycles_of,
    strongly_connected,
)

__all__ = ["Allowance", "Config", "ConfigError", "Contract", "check", "load_config", "main"]

TABLE = "tool.backserv.imports"


class ConfigError(Exception):
    """The ``[tool.backserv.imports]`` table is missing or malformed."""


def matches(module: str, pattern: str) -> bool:
    """Whether ``pattern`` covers ``module`` (the module itself, or one under it)."""
    return fnmatchcase(module, pattern) or fnmatchcase(module, pattern + ".*")


@dataclass(frozen=True)
class Allowance:
    importer: str
    imported: str
    reason: str

    def covers(self, imp: Import) -> bool:
        return matches(imp.importer, self.importer) and matches(imp.imported, self.imported)

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported}"


@dataclass(frozen=True)
class Contract:
    name: str
    modules: tuple[str, ...]
    forbidden: tuple[str, ...]
    allow: tuple[Allowance, ...] = ()

    def forbids(self, imp: Import) -> bool:
        return any(matches(imp.importer, p) for p in self.modules) and any(
            matches(imp.imported, p) for p in self.forbidden
        )

    def rule(self) -> str:
        return f"{', '.join(self.modules)} must not import {', '.join(self.forbidden)}"


@dataclass(frozen=True)
class Config:
    packages: tuple[str, ...]
    contracts: tuple[Contract, ...] = ()


def load_config(path: Path) -> Config:
    """The ``[tool.backserv.imports]`` table of ``path``; every problem names its field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    table: Any = data.get("tool", {}).get("backserv", {}).get("imports")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: has no [{TABLE}] table")
    _known_keys(table, {"packages", "contracts"}, f"[{TABLE}]")
    packages = _names(table.get("packages"), f"{TABLE}.packages")
    if not packages:
        raise ConfigError(f"{TABLE}.packages: list at least one package")
    raw_contracts = table.get("contracts", [])
    if not isinstance(raw_contracts, list):
        raise ConfigError(f"{TABLE}.contracts: must be an array of tables")
    contracts = tuple(_contract(raw, i) for i, raw in enumerate(raw_contracts))
    return Config(packages, contracts)


def _contract(raw: Any, i: int) -> Contract:
    where = f"{TABLE}.contracts[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    _known_keys(raw, {"name", "modules", "forbidden", "allow"}, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: give the contract a name")
    modules = _names(raw.get("modules"), f"{where}.modules")
    forbidden = _names(raw.get("forbidden"), f"{where}.forbidden")
    if not modules or not forbidden:
        raise ConfigError(f"{where}: 'modules' and 'forbidden' each need at least one pattern")
    raw_allow = raw.get("allow", [])
    if not isinstance(raw_allow, list):
        raise ConfigError(f"{where}.allow: must be an array of tables")
    allow = tuple(_allowance(entry, f"{where}.allow[{j}]") for j, entry in enumerate(raw_allow))
    return Contract(name, modules, forbidden, allow)


def _allowance(raw: Any, where: str) -> Allowance:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table {{ import = '...', reason = '...' }}")
    _known_keys(raw, {"import", "reason"}, where)
    spec, reason = raw.get("import"), raw.get("reason")
    if not isinstance(spec, str) or spec.count("->") != 1:
        raise ConfigError(f"{where}.import: write it as 'importer -> imported'")
    importer, imported = (part.strip() for part in spec.split("->"))
    if not importer or not imported:
        raise ConfigError(f"{where}.import: write it as 'importer -> imported'")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError(f"{where}.reason: every exception says why it is allowed")
    return Allowance(importer, imported, reason.strip())


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: must be a list of dotted module names")
    return tuple(value)


def _known_keys(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {names})")


# -- the check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cycle:
    """A strongly connected group of modules, and import chains that together use every
    import inside it (``a -> b -> a``), each import with its file and line."""

    modules: list[str]
    chains: list[list[Import]]


@dataclass
class Report:
    cycles: list[Cycle]
    violations: list[tuple[Contract, Import]]
    stale: list[tuple[Contract, Allowance]]

    @property
    def clean(self) -> bool:
        return not (self.cycles or self.violations or self.stale)


def check(graph: Graph, config: Config) -> Report:
    cycles = [
        Cycle(
            component,
            [
                [graph.first(a, b) for a, b in pairwise(chain)]
                for chain in cycles_of(graph, component)
            ],
        )
        for component in strongly_connected(graph)
    ]
    violations: list[tuple[Contract, Import]] = []
    used: set[tuple[int, int]] = set()
    for imp in graph.imports():
        for c, contract in enumerate(config.contracts):
            if not contract.forbids(imp):
                continue
            allowed = [a for a, allowance in enumerate(contract.allow) if allowance.covers(imp)]
            used.update((c, a) for a in allowed)
            if not allowed:
                violations.append((contract, imp))
    stale = [
        (contract, allowance)
        for c, contract in enumerate(config.contracts)
        for a, allowance in enumerate(contract.allow)
        if (c, a) not in used
    ]
    return Report(cycles, violations, stale)


def render(report: Report, graph: Graph) -> str:
    lines: list[str] = []
    for cycle in report.cycles:
        lines.append(f"import cycle among {len(cycle.modules)} modules: {', '.join(cycle.modules)}")
        for chain in cycle.chains:
            modules = [imp.importer for imp in chain] + [chain[0].importer]
            lines.append(f"  {' -> '.join(modules)}")
            lines.extend(f"      {imp.describe()}" for imp in chain)
    by_contract: dict[str, list[Import]] = {}
    rules: dict[str, str] = {}
    for contract, imp in report.violations:
        by_contract.setdefault(contract.name, []).append(imp)
        rules[contract.name] = contract.rule()
    for name, imps in by_contract.items():
        lines.append(f"contract broken: {name} ({rules[name]})")
        lines.extend(f"    {imp.describe()}" for imp in imps)
    for contract, allowance in report.stale:
        lines.append(
            f"stale exception in contract '{contract.name}': {allowance} matches no import; "
            "delete it"
        )
    count = sum(len(targets) for targets in graph.edges.values())
    lines.append(
        f"imports: {len(graph.modules)} modules, {count} project imports; "
        f"{len(report.cycles)} cycle(s), {len(report.violations)} contract violation(s), "
        f"{len(report.stale)} stale exception(s)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="check_imports", description=__doc__.split("\n", 1)[0] if __doc__ else None
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root")
    parser.add_argument("--config", type=Path, help="default: ROOT/pyproject.toml")
    args = parser.parse_args(argv)
    root: Path = args.root
    try:
        config = load_config(args.config or root / "pyproject.toml")
        graph = build_graph(root, config.packages)
    except (ConfigError, SourceError) as exc:
        print(f"check_imports: {exc}", file=sys.stderr)
        return 2
    report = check(graph, config)
    print(render(report, graph))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
