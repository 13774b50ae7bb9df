"""``.env.example``, where the README's configuration section starts: it names every setting."""

from __future__ import annotations

import re

from gateway.settings import Settings
from tests.conftest import ROOT

#: settings read under their vendors' names (FAL_KEY, REPLICATE_API_TOKEN) as well
VENDOR_NAMES = {"fal_key": "FAL_KEY", "replicate_api_token": "REPLICATE_API_TOKEN"}


def test_env_example_names_every_setting() -> None:
    shown = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    missing = [
        name
        for name in Settings.model_fields
        if f"BACKSERV_{name.upper()}" not in shown and VENDOR_NAMES.get(name) not in shown
    ]
    assert missing == [], f"add these to .env.example: {missing}"
