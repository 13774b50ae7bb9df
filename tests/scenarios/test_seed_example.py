"""The polling script of seeds/jobs-api.md, run verbatim against a real gateway."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image

from tests.server import running_server

EXAMPLE = Path(__file__).parent.parent / "data" / "jobs_api_example.py"


def test_the_documented_polling_script_prints_completed_and_a_1024_png(tmp_path: Path) -> None:
    with running_server(tmp_path, {"BACKSERV_API_KEYS": "seed-key"}) as server:
        script = (
            EXAMPLE.read_text()
            .replace('"your_api_key"', '"seed-key"')
            .replace('"https://api.serika.dev/api/openai/v1"', f'"{server.url}/v1"')
            .replace('"tensorart-illustrious-xl-v2-aesthetic"', '"sandbox-image"')
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "Status: COMPLETED" in done.stdout
        match = re.search(r"Result URL: (\S+)", done.stdout)
        assert match, done.stdout
        png = httpx.get(match.group(1), timeout=10)
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (1024, 1024)
