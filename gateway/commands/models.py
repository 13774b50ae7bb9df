"""``backserv models``: the catalog's models, read from the file the settings name."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.catalog import CatalogModel, load_catalog
from gateway.commands.output import print_json, print_table
from gateway.settings import Settings
from providers.registry import KNOWN_PROVIDERS


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="list the catalog's models")
    models.add_argument("--json", action="store_true", help="print the models as JSON")


def model_document(model: CatalogModel) -> dict[str, Any]:
    return {
        "id": model.id,
        "kind": model.kind.name,
        "description": model.description,
        "jobs_only": model.jobs_only,
        "defaults": model.defaults,
        "limits": model.limits,
        "routes": [{"provider": r.provider, "target": r.target} for r in model.routes],
    }


def command(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(settings.catalog_path, KNOWN_PROVIDERS)
    if args.json:
        print_json([model_document(m) for m in catalog])
        return 0
    print_table(
        ("MODEL", "KIND", "ROUTES (FIRST IS PRIMARY)", "JOBS ONLY"),
        [
            (m.id, m.kind.name, " -> ".join(r.name for r in m.routes), "yes" if m.jobs_only else "")
            for m in catalog
        ],
    )
    return 0
