"""A catalog model's optional ``example`` (gateway/catalog.py): an image beside the catalog,
or a prompt the sandbox renders; each mistake is a ConfigError naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import parse_catalog
from gateway.errors import ConfigError
from providers.registry import KNOWN_PROVIDERS


def catalog(example: dict[str, Any], provider: str = "sandbox", base: Path | None = None) -> Any:
    raw = {
        "models": [
            {
                "id": "m",
                "kind": "image",
                "routes": [{"provider": provider, "target": "image"}],
                "example": example,
            }
        ]
    }
    return parse_catalog(raw, KNOWN_PROVIDERS, source="c.toml", base_dir=base)


def test_a_prompt_example_of_a_sandbox_model() -> None:
    model = catalog({"prompt": "a fox"}).get("m")
    assert model.example is not None and model.example.prompt == "a fox"


def test_an_image_example_is_a_file_beside_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "m.webp").write_bytes(b"RIFF....WEBP")
    model = catalog({"image": "ex/m.webp"}, "fal", tmp_path).get("m")
    assert model.example.image == tmp_path / "ex" / "m.webp"
    assert model.example.content_type == "image/webp"


@pytest.mark.parametrize(
    ("example", "provider", "words"),
    [
        ({"prompt": "a fox"}, "fal", "example.prompt"),
        ({"image": "missing.png"}, "fal", "no file"),
        ({"image": "notes.txt"}, "fal", "must be one of"),
        ({}, "sandbox", "either 'prompt'"),
        ({"prompt": "x", "image": "y.png"}, "sandbox", "either 'prompt'"),
    ],
)
def test_a_wrong_example_names_the_field(
    tmp_path: Path, example: dict[str, Any], provider: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        catalog(example, provider, tmp_path)
