"""Ready-to-copy examples for a model page: curl, Python ``requests`` polling, the OpenAI SDK.

Each is filled in with the gateway's URL and the model id, and with an input that is valid for
the model's kind (its required parameters, plus a small size where the kind has one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.api.openai_edit_inputs import SHAPES
from gateway.web.view import ModelView

SAMPLE_PROMPT = "a lighthouse at dusk"
SAMPLE_IMAGE = "https://example.com/input.png"
#: per kind, what the required parameters alone do not make a valid input
_EXTRAS: dict[str, dict[str, Any]] = {
    "image": {"width": 512, "height": 512},
    "video": {"duration": 2},
    "image_adjust": {"aspect_ratio": 1.0},
    "fal_app": {"prompt": SAMPLE_PROMPT},
}


@dataclass(frozen=True)
class Example:
    slug: str
    title: str
    language: str
    code: str


def sample_input(model: ModelView) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in model.params:
        if not p.required:
            continue
        if p.type == "array":
            out[p.name] = [SAMPLE_IMAGE]
        elif "prompt" in p.name:
            out[p.name] = SAMPLE_PROMPT
        elif p.type == "string":
            out[p.name] = SAMPLE_IMAGE
    names = {p.name for p in model.params}
    for name, value in _EXTRAS.get(model.kind, {}).items():
        if name in names or model.free_input:
            out[name] = value
    return out


def examples(model: ModelView, base_url: str) -> list[Example]:
    base = base_url.rstrip("/")
    return [
        Example("curl", "curl", "bash", _curl(model, base)),
        Example("requests", "Python requests (polling)", "python", _requests(model, base)),
        Example("openai", "OpenAI SDK", "python", _openai(model, base)),
    ]


def submit_request(model: ModelView) -> tuple[str, dict[str, Any]]:
    """The Jobs API path and body that submit a job of this model."""
    if model.kind == "image":  # the images endpoint takes the input at the top level
        return "/jobs/images", {"model": model.id, **sample_input(model)}
    return "/jobs", {"model": model.id, "input": sample_input(model)}


def _curl(model: ModelView, base: str) -> str:
    path, body = submit_request(model)
    data = json.dumps(body).replace("'", "'\\''")
    return (
        "KEY=bsk_...   # your API key\n"
        f'curl -s {base}/v1{path} -H "Authorization: Bearer $KEY" \\\n'
        '     -H "Content-Type: application/json" \\\n'
        f"     -d '{data}'\n"
        '# -> 202 {"id": "job-…", "status": "QUEUED", …}\n\n'
        "# wait up to 30 s for it to finish, then read result.url\n"
        f'curl -s "{base}/v1/jobs/JOB_ID?wait=30" -H "Authorization: Bearer $KEY"\n'
        "# live status and progress as Server-Sent Events\n"
        f'curl -N {base}/v1/jobs/JOB_ID/events -H "Authorization: Bearer $KEY"\n'
    )


def _requests(model: ModelView, base: str) -> str:
    path, body = submit_request(model)
    return (
        "import time\n\n"
        "import requests\n\n"
        'API_KEY = "bsk_..."\n'
        f"BASE_URL = {_py(base + '/v1')}\n"
        'headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}\n\n'
        f"data = {_py(body)}\n"
        f'resp = requests.post(f"{{BASE_URL}}{path}", headers=headers, json=data)\n'
        "resp.raise_for_status()\n"
        'job_id = resp.json()["id"]\n\n'
        "while True:\n"
        '    job = requests.get(f"{BASE_URL}/jobs/{job_id}", headers=headers).json()\n'
        '    print("Status:", job["status"], job["progress"])\n'
        '    if job["status"] == "COMPLETED":\n'
        '        print("Result URL:", job["result"]["url"])\n'
        "        break\n"
        '    if job["status"] in ("FAILED", "CANCELLED"):\n'
        '        print("Job ended:", job.get("error"))\n'
        "        break\n"
        "    time.sleep(2)\n"
    )


def _openai(model: ModelView, base: str) -> str:
    path, body = submit_request(model)
    lines = [
        "from openai import OpenAI",
        "",
        f'client = OpenAI(base_url={_py(base + "/v1")}, api_key="bsk_...")',
        "",
    ]
    if model.kind == "image" and not model.jobs_only:
        lines += [
            "# synchronous: submits a job and waits for it",
            "image = client.images.generate(",
            f'    model={_py(model.id)}, prompt={_py(SAMPLE_PROMPT)}, size="512x512"',
            ")",
            "print(image.data[0].url)",
            "",
        ]
    if model.kind == "video":
        lines += [
            "# OpenAI's video API: create, poll until done, download",
            "video = client.videos.create_and_poll(",
            f'    model={_py(model.id)}, prompt={_py(SAMPLE_PROMPT)}, seconds="2"',
            ")",
            'if video.status == "completed":',
            '    client.videos.download_content(video.id).write_to_file("video.bin")',
            "else:",
            "    print(video.error)",
            "",
        ]
    if model.kind in SHAPES and not model.jobs_only:
        lines += [
            "# OpenAI's image edit: upload the image, wait for the result",
            "result = client.images.edit(",
            f"    model={_py(model.id)},",
            '    image=open("input.png", "rb"),',
            f"    prompt={_py(SAMPLE_PROMPT)},",
            ")",
            "print(result.data[0].url)",
            "",
        ]
    lines += [
        "# the Jobs API through the same client: submit, then long-poll",
        f"job = client.post({_py(path)}, body={_py(body)}, cast_to=object)",
        'while job["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):',
        "    job = client.get(f\"/jobs/{job['id']}?wait=30\", cast_to=object)",
        'print(job["status"], (job.get("result") or {}).get("url"), job.get("error"))',
    ]
    return "\n".join(lines) + "\n"


def _py(value: Any) -> str:
    """A Python literal, strings in double quotes (JSON's string escapes are Python's too)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(str(k))}: {_py(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Python literal for {type(value).__name__}")
