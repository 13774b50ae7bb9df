"""The document's usage report: ``GET /v1/usage`` (``gateway/api/usage.py``)."""

from __future__ import annotations

from gateway.api.openapi.components import (
    API_KEY,
    INTEGER,
    NUMBER,
    STRING,
    Components,
    Schema,
    answer,
    errors,
    nullable,
    obj,
)
from gateway.usage import DEFAULT_DAYS, GROUPS

_DAY: Schema = {**STRING, "format": "date", "examples": ["2025-03-14"]}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def usage_paths(c: Components) -> dict[str, Schema]:
    line = obj(
        {
            "day": _DAY,
            "model": STRING,
            "provider": STRING,
            "key": STRING,
            "cost": NUMBER,
            "attempts": {**INTEGER, "description": "Priced attempts summed in this line."},
        },
        ("cost", "attempts"),
        description="One group of the report: only the names in 'group_by' appear.",
    )
    period = obj({"budget": nullable(NUMBER), "spent": NUMBER}, ("budget", "spent"))
    report = c.add(
        "UsageReport",
        obj(
            {
                "object": {"const": "usage"},
                "start": _DAY,
                "end": _DAY,
                "group_by": {"type": "array", "items": {"enum": list(GROUPS)}},
                "currency": STRING,
                "total": NUMBER,
                "data": {"type": "array", "items": line},
                "key_id": STRING,
                "budgets": obj(
                    {"daily": period, "monthly": period, "total": period},
                    ("daily", "monthly", "total"),
                    description="The key's budgets and what counts against them: what its "
                    "finished jobs cost and the estimates of its running ones.",
                ),
            },
            ("object", "start", "end", "group_by", "currency", "total", "data"),
            description="What priced attempts cost, summed from the usage ledger; 'key_id' "
            "and 'budgets' when the report is one key's.",
        ),
    )
    csv = {**STRING, "description": "A header line, then one line per group."}
    return {
        "/v1/usage": {
            "get": {
                "security": API_KEY,
                "tags": ["Usage"],
                "operationId": "getUsage",
                "summary": "What this key (or, with the admin scope, every key) spent",
                "parameters": [
                    _query("start", _DAY, f"First UTC day (default: {DEFAULT_DAYS} days ago)."),
                    _query(
                        "end",
                        _DAY,
                        "Last UTC day, included (default: today); before 'start': no day.",
                    ),
                    _query(
                        "group_by",
                        {
                            **STRING,
                            "pattern": f"^({'|'.join(GROUPS)})(,({'|'.join(GROUPS)}))*$",
                            "default": "day,model,provider",
                        },
                        f"A comma list of {', '.join(GROUPS)}.",
                    ),
                    _query("format", {"enum": ["json", "csv"]}, "csv: the report as CSV."),
                    _query(
                        "key_id",
                        STRING,
                        "One key's usage (admin scope for another key's; an admin without "
                        "it gets every key's).",
                    ),
                ],
                "responses": {
                    "200": {
                        **answer("The report.", report),
                        "content": {
                            "application/json": {"schema": report},
                            "text/csv": {"schema": csv},
                        },
                    },
                    **errors("openai", 400, 401, 403),
                },
            }
        }
    }
