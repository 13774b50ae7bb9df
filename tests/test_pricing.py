"""Prices in the catalog (validated like every other field) and what an attempt costs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.catalog import parse_catalog
from gateway.errors import ConfigError
from gateway.pricing import Price, Report, estimate, final
from providers.registry import KNOWN_PROVIDERS


def catalog(*routes: dict[str, Any], kind: str = "image", model: str = "m") -> dict[str, Any]:
    return {"models": [{"id": model, "kind": kind, "routes": list(routes)}]}


def route(target: str = "image", **price: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"provider": "sandbox", "target": target}
    if price:
        found["price"] = price
    return found


def parse(raw: dict[str, Any]) -> Any:
    return parse_catalog(raw, KNOWN_PROVIDERS, source="cat.toml")


def test_a_route_without_a_price_is_unpriced_not_free() -> None:
    cat = parse(catalog(route()))
    [only] = cat.get("m").routes

    assert cat.price_of(only) is None
    assert estimate(cat.price_of(only), {"num_images": 2}) is None


def test_a_price_is_read_exactly_as_written() -> None:
    cat = parse(catalog(route(amount=0.025, unit="image")))
    [only] = cat.get("m").routes

    assert cat.price_of(only) == Price(Decimal("0.025"), "image", "USD", None)
    assert cat.currency == "USD"


@pytest.mark.parametrize(
    ("price", "field", "words"),
    [
        ({"amount": -1, "unit": "image"}, "routes[0].price.amount", "greater than or equal"),
        ({"amount": 1, "unit": "token"}, "routes[0].price.unit", "'image'"),
        ({"amount": 1e9, "unit": "run"}, "routes[0].price.amount", "less than or equal"),
        ({"unit": "run"}, "routes[0].price.amount", "required"),
        ({"amount": 1, "unit": "run", "currency": "usd"}, "routes[0].price.currency", "match"),
        ({"amount": 1, "unit": "run", "tax": 2}, "routes[0].price.tax", "not permitted"),
        ({"amount": 1, "unit": "compute_second"}, "routes[0].price.estimate", "estimate"),
        ({"amount": 1, "unit": "compute_second", "estimate": 0}, "routes[0].price.estimate", ""),
    ],
)
def test_a_bad_price_names_the_model_and_the_field(
    price: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(catalog(route(**price)))

    assert f"model 'm': field '{field}" in caught.value.message
    assert words in caught.value.message


def test_a_megapixel_price_needs_an_estimate_for_a_kind_without_a_size() -> None:
    with pytest.raises(ConfigError, match="no width and height"):
        parse(catalog(route("upscale", amount=0.01, unit="megapixel"), kind="upscale"))

    cat = parse(
        catalog(route("upscale", amount=0.01, unit="megapixel", estimate=4), kind="upscale")
    )
    [only] = cat.get("m").routes
    assert estimate(cat.price_of(only), {"scale_factor": 2}) == 40_000


def test_every_price_of_a_catalog_is_in_one_currency() -> None:
    raw = {
        "models": [
            {"id": "a", "kind": "image", "routes": [route(amount=1, unit="run")]},
            {
                "id": "b",
                "kind": "image",
                "routes": [route("video", amount=1, unit="run", currency="EUR")],
            },
        ]
    }
    with pytest.raises(ConfigError, match="one currency"):
        parse(raw)


def test_a_provider_target_has_one_price_across_models() -> None:
    raw = {
        "models": [
            {"id": "a", "kind": "image", "routes": [route(amount=1, unit="run")]},
            {"id": "b", "kind": "image", "routes": [route(amount=2, unit="run")]},
        ]
    }
    with pytest.raises(ConfigError, match="already has another price"):
        parse(raw)


def test_the_shipped_catalog_prices_every_hosted_route() -> None:
    from pathlib import Path

    from gateway.catalog import load_catalog

    cat = load_catalog(Path(__file__).parent.parent / "catalog.toml", KNOWN_PROVIDERS)
    hosted = [r for m in cat for r in m.routes if r.provider in ("fal", "replicate")]

    assert hosted and all(cat.price_of(r) is not None for r in hosted)


@pytest.mark.parametrize(
    ("unit", "job_input", "micros"),
    [
        ("image", {"num_images": 3}, 300_000),
        ("megapixel", {"width": 1024, "height": 512, "num_images": 2}, 104_858),
        ("video_second", {"duration": 6}, 600_000),
        ("run", {"num_images": 4}, 100_000),
    ],
)
def test_the_estimate_is_read_from_the_input(
    unit: str, job_input: dict[str, Any], micros: int
) -> None:
    assert estimate(Price(Decimal("0.1"), unit), job_input) == micros


def test_a_compute_price_is_estimated_from_its_estimate_and_billed_as_reported() -> None:
    price = Price(Decimal("0.001"), "compute_second", estimate=8)

    assert estimate(price, {}) == 8_000
    assert final(price, {}, Report(True, compute_seconds=2.5)) == 2_500
    assert final(price, {}, Report(True)) == 8_000  # unreported: the estimate stands


def test_a_failed_attempt_costs_only_the_compute_the_provider_billed() -> None:
    per_image = Price(Decimal("0.04"), "image")
    per_second = Price(Decimal("0.001"), "compute_second", estimate=8)

    assert final(per_image, {"num_images": 2}, Report(False, compute_seconds=3.0)) == 0
    assert final(per_second, {}, Report(False, compute_seconds=3.0)) == 3_000
    assert final(per_second, {}, Report(False)) == 0


def test_the_final_cost_counts_what_was_produced() -> None:
    per_image = Price(Decimal("0.04"), "image")
    per_mp = Price(Decimal("0.01"), "megapixel")
    sizes = [(1000, 1000), (500, 500)]

    assert final(per_image, {"num_images": 4}, Report(True, sizes=sizes)) == 80_000
    assert final(per_mp, {"width": 64, "height": 64}, Report(True, sizes=sizes)) == 12_500
