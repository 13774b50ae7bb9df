"""axe-core (vendored from npm in tests/web/vendor/axe-core/, test-only) run in the page.

The script is added as an init script, which the DevTools protocol runs outside the page's
Content-Security-Policy, so the pages' policy stays as strict as served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


async def with_axe(page: Any) -> None:
    """Call before ``goto``: every document the page opens gets ``window.axe``."""
    await page.add_init_script(script=AXE.read_text(encoding="utf-8"))


async def serious_violations(page: Any) -> list[str]:
    """The page's serious and critical WCAG A/AA violations, one line each."""
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await window.axe.run(document, {
            runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
            resultTypes: ['violations'],
        })).violations.map(v => ({ id: v.id, impact: v.impact,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')) }))"""
    )
    return [f"{v['id']} ({v['impact']}): {v['nodes']}" for v in found if v["impact"] in SERIOUS]
