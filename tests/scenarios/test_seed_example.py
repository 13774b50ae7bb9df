"""The polling script of seeds/jobs-api.md, and the README's quick start (its first job with
``backserv run``, then its Python polling example), run as written against a real gateway."""

from __future__ import annotations

import io
import os
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


# -- the README's quick start, followed as written ----------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(after: str, language: str) -> str:
    """The first fenced ``language`` block of the README after the line starting ``after``."""
    text = README.read_text()
    start = text.index(after)
    opening = text.index(f"```{language}\n", start) + len(language) + 4
    return text[opening : text.index("```", opening)]


def test_the_readme_first_job_runs_and_saves_its_image(tmp_path: Path) -> None:
    block = readme_block("**Your first job.**", "bash")
    assert "backserv run" in block
    script = block.replace("bsk_...", "readme-key").replace(
        ".venv/bin/backserv", f"{sys.executable} -m gateway.cli"
    )
    with running_server(tmp_path, {"BACKSERV_API_KEYS": "readme-key"}) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKSERV_")}
        env["BACKSERV_URL"] = server.url  # the README's default is localhost:4093
        done = subprocess.run(
            ["bash", "-euc", script], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=90,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Saved lighthouse.png" in done.stdout
        with Image.open(tmp_path / "lighthouse.png") as image:
            assert image.format == "PNG" and image.size == (1024, 1024)

        polling = readme_block("### Python `requests`", "python")
        script = polling.replace('"bsk_..."', '"readme-key"').replace(
            '"http://localhost:4093/v1"', f'"{server.url}/v1"'
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "Status: COMPLETED" in done.stdout and "Result URL: http" in done.stdout
