"""``backserv run`` end to end: the real command (a subprocess) against a real gateway
(``backserv serve``, tests/server.py) running the sandbox models."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.server import Server, free_port, running_server

KEY = "run-key"
PROGRESS_LINE = re.compile(r"^(job-\S+) (QUEUED|PROCESSING|COMPLETED|FAILED|CANCELLED)\b.* (\d+)%$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gateway")
    # a second of rendering, so the job is seen running
    env = {"BACKSERV_API_KEYS": KEY, "BACKSERV_SANDBOX_LATENCY": "1.0"}
    with running_server(workdir, env) as running:
        yield running


def backserv(
    *argv: str, cwd: Path, url: str | None, key: str | None = KEY
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKSERV_")}
    if url is not None:
        env["BACKSERV_URL"] = url
    if key is not None:
        env["BACKSERV_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def progress_lines(stderr: str) -> list[tuple[str, str, int]]:
    found = [PROGRESS_LINE.match(line) for line in stderr.splitlines()]
    return [(m.group(1), m.group(2), int(m.group(3))) for m in found if m]


def test_run_saves_the_image_and_shows_its_progress(server: Server, tmp_path: Path) -> None:
    done = backserv(
        "run", "sandbox-image", "a red fox", "-p", "width=256", "--param", "height=192",
        "-p", "seed=7", "--out", "out/fox.png", cwd=tmp_path, url=server.url,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out" / "fox.png") as image:
        assert image.format == "PNG" and image.size == (256, 192)
    assert done.stdout.startswith("Saved out/fox.png (256x192, image/png, ")
    lines = progress_lines(done.stderr)
    assert lines, done.stderr
    assert len({job_id for job_id, _, _ in lines}) == 1  # one job
    assert lines[0][1] in ("QUEUED", "PROCESSING")
    assert lines[-1][1:] == ("COMPLETED", 100)
    shown = [percent for _, _, percent in lines]
    assert shown == sorted(shown)  # progress only moves forward


def test_run_json_prints_the_finished_job_with_the_input_it_ran(
    server: Server, tmp_path: Path
) -> None:
    done = backserv(
        "run", "sandbox-image", "a lighthouse", "-p", "width=128", "-p", "height=128",
        "-p", 'negative_prompt="fog"', "--json", cwd=tmp_path, url=server.url,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "COMPLETED" and job["model"] == "sandbox-image"
    assert job["input"]["prompt"] == "a lighthouse"
    assert job["input"]["width"] == 128  # K=V values are read as JSON: a number
    assert job["input"]["negative_prompt"] == "fog"
    saved = tmp_path / f"{job['id']}.png"  # no --out: the job id, in the working directory
    assert Image.open(io.BytesIO(saved.read_bytes())).size == (128, 128)
    assert f"Saved {saved.name}" in done.stderr


def test_run_of_several_images_numbers_the_files(server: Server, tmp_path: Path) -> None:
    done = backserv(
        "run", "sandbox-image", "two foxes", "-p", "num_images=2", "-p", "width=64",
        "-p", "height=64", "-o", "fox.png", cwd=tmp_path, url=server.url,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("fox*.png")) == ["fox-0.png", "fox-1.png"]


def test_run_of_an_unknown_model_fails_naming_it(server: Server, tmp_path: Path) -> None:
    done = backserv("run", "no-such-model", "x", cwd=tmp_path, url=server.url)

    assert done.returncode == 1
    assert "404" in done.stderr and "no-such-model" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_with_a_bad_input_value_fails_naming_the_field(server: Server, tmp_path: Path) -> None:
    done = backserv("run", "sandbox-image", "x", "-p", "width=13", cwd=tmp_path, url=server.url)

    assert done.returncode == 1
    assert "400" in done.stderr and "width" in done.stderr


def test_run_with_a_wrong_key_says_how_to_give_one(server: Server, tmp_path: Path) -> None:
    done = backserv("run", "sandbox-image", "x", cwd=tmp_path, url=server.url, key="nope")

    assert done.returncode == 1
    assert "401" in done.stderr and "BACKSERV_API_KEY" in done.stderr


def test_run_without_a_key_is_a_usage_error(tmp_path: Path) -> None:
    done = backserv("run", "sandbox-image", "x", cwd=tmp_path, url=None, key=None)

    assert done.returncode == 2
    assert "BACKSERV_API_KEY" in done.stderr


def test_run_against_no_gateway_names_the_address_tried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    done = backserv("run", "sandbox-image", "x", cwd=tmp_path, url=url)

    assert done.returncode == 1
    assert f"cannot reach the gateway at {url}" in done.stderr


def test_a_param_without_an_equals_sign_is_a_usage_error(tmp_path: Path) -> None:
    done = backserv("run", "sandbox-image", "x", "-p", "width", cwd=tmp_path, url=None)

    assert done.returncode == 2
    assert "K=V" in done.stderr
