"""Properties of the catalog's input mapping (gateway/catalog.py, providers/mapping.py).

What reaches a provider is what the client asked for: every value of the job's input arrives
under the name the route gives it, a model's defaults arrive when the client left a field
out, a route's constants are applied, width and height take the route's size form, and
nothing else is sent (no field the route drops, no null, no field of another name). And a
catalog whose routes could not keep that promise (two fields sent to one provider field, an
``input_map`` entry for a field the kind does not have) is refused when it loads, naming the
route's field. Derandomized and small, so CI cannot flake.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalog import CatalogModel, load_catalog, parse_catalog
from gateway.errors import ConfigError
from gateway.kinds import KINDS
from providers.base import RouteSpec
from providers.mapping import ASPECT_RATIOS, SIZE_MODES, map_input, validate_route_mapping
from providers.registry import KNOWN_PROVIDERS
from tests.test_kinds_properties import PROPERTIES, SPECS, valid_input

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = load_catalog(ROOT / "catalog.toml", KNOWN_PROVIDERS)
SIZE_KEYS = ("image_size", "aspect_ratio", "size")


def within_limits(model: CatalogModel, raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with each numeric value moved inside the model's own limits."""
    out = dict(raw)
    for key, bound in model.limits.items():
        rule, _, name = key.partition("_")
        value = out.get(name)
        if value is None or isinstance(value, bool):
            continue
        if (rule == "max" and value > bound) or (rule == "min" and value < bound):
            out[name] = int(bound) if isinstance(value, int) else float(bound)
    return out


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, (dotted, tree)
        node = node[part]
    return node


def leaves(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in leaves(value)]
    return [tree]


def overlaps(a: str, b: str) -> bool:
    """One provider path is the other or lies beneath it (``extra`` and ``extra.seed``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def sent_paths(route: RouteSpec, job_input: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every provider path the route writes for this input, in order, with the canonical
    field (or the size key, or the constant) whose value belongs there."""
    size_mode = str(route.options.get("size", "width_height"))
    paths: list[tuple[str, Any]] = []
    for name, value in job_input.items():
        if value is None or (name in ("width", "height") and size_mode != "width_height"):
            continue
        if name == "seed" and route.options.get("drop_seed"):
            continue
        target = route.input_map.get(name, name)
        if target:
            paths.append((target, ("field", name)))
    sized = isinstance(job_input.get("width"), int) and isinstance(job_input.get("height"), int)
    if size_mode in SIZE_KEYS and sized:
        paths.append((route.input_map.get(size_mode, size_mode), ("size", size_mode)))
    for name in route.constants:
        paths.append((name, ("constant", name)))
    return paths


def check_request(route: RouteSpec, job_input: dict[str, Any], request: dict[str, Any]) -> None:
    """The mapping invariants, for one route and one canonical input."""
    paths = sent_paths(route, job_input)
    constants = list(route.constants)
    # nothing else is sent: the top-level names are exactly those of the route's paths
    assert set(request) == {p.split(".")[0] for p, _ in paths}, (request, paths)
    assert None not in leaves(request)
    orjson.dumps(request)  # goes out as JSON
    for path, (source, name) in paths:
        if source == "constant":  # applied last: they win
            assert lookup(request, path) == route.constants[name]
            continue
        if any(overlaps(path, c) for c in constants):
            continue  # a constant of the route replaces what the input had there
        if source == "field":
            assert lookup(request, path) == job_input[name], path
            continue
        width, height = job_input["width"], job_input["height"]
        if name == "image_size":
            assert lookup(request, path) == {"width": width, "height": height}
        elif name == "size":
            assert lookup(request, path) == f"{width}x{height}"
        else:
            ratio = lookup(request, path)
            assert ratio in ASPECT_RATIOS
            best = min(abs(_value(r) - width / height) for r in ASPECT_RATIOS)
            assert abs(_value(ratio) - width / height) == best
    # a field the route drops ("") is not sent under its own name either
    for name, target in route.input_map.items():
        if target == "" and not any(overlaps(name, p) for p, _ in paths):
            assert name not in request


def _value(ratio: str) -> float:
    w, h = ratio.split(":")
    return int(w) / int(h)


# -- the shipped catalog -----------------------------------------------------------------------

SHIPPED_ROUTES = [
    (model.id, i)
    for model in SHIPPED
    for i, route in enumerate(model.routes)
    if model.kind.name in SPECS and route.provider in ("fal", "replicate")
]


def test_the_shipped_catalog_has_hosted_routes_to_check() -> None:
    assert {SHIPPED.get(m).kind.name for m, _ in SHIPPED_ROUTES} >= {"image", "video", "upscale"}


@pytest.mark.parametrize(("model_id", "index"), SHIPPED_ROUTES)
@PROPERTIES
@given(data=st.data())
def test_a_shipped_route_sends_the_input_with_defaults_and_nothing_else(
    model_id: str, index: int, data: st.DataObject
) -> None:
    model = SHIPPED.get(model_id)
    route = model.routes[index]
    raw = within_limits(model, data.draw(valid_input(model.kind.name)))
    job_input = model.validate_input(raw)
    kept = copy.deepcopy(job_input)

    request = map_input(route, job_input)

    assert job_input == kept  # the job's own input is not changed
    assert map_input(route, job_input) == request
    check_request(route, job_input, request)
    # the model's defaults reach the provider where the client left the field out
    for name, value in model.defaults.items():
        target = route.input_map.get(name, name)
        if raw.get(name) is None and target and name not in ("width", "height"):
            assert lookup(request, target) == value, (name, request)


# -- any route the catalog accepts -------------------------------------------------------------

#: provider field names: a few plain ones, canonical names, dotted paths, the size keys, ""
PROVIDER_NAMES = st.sampled_from(
    [
        "text",
        "num_inference_steps",
        "guidance",
        "extra",
        "extra.seed",
        "extra.guidance",
        "a.b.c",
        "prompt",
        "seed",
        "width",
        "image_size",
        "size",
        "aspect_ratio",
        "",
    ]
)


@st.composite
def routes(draw: st.DrawFn, kind_name: str) -> RouteSpec:
    fields = sorted(SPECS[kind_name]) + list(SIZE_KEYS)
    input_map = draw(st.dictionaries(st.sampled_from(fields), PROVIDER_NAMES, max_size=5))
    constants = draw(
        st.dictionaries(
            PROVIDER_NAMES.filter(bool) | st.sampled_from(["output_format", "safety.off"]),
            st.integers(0, 9) | st.sampled_from(["png", "fast"]) | st.booleans(),
            max_size=2,
        ).filter(lambda d: not any(a != b and overlaps(a, b) for a in d for b in d))
    )
    options: dict[str, Any] = {"size": draw(st.sampled_from(SIZE_MODES))}
    if draw(st.booleans()):
        options["drop_seed"] = draw(st.booleans())
    return RouteSpec(
        draw(st.sampled_from(["fal", "replicate"])), "o/m", options, input_map, constants
    )


@pytest.mark.parametrize("kind_name", ["image", "video", "upscale", "edit", "refine"])
@PROPERTIES
@given(data=st.data())
def test_a_route_the_catalog_accepts_sends_every_value_where_it_says(
    kind_name: str, data: st.DataObject
) -> None:
    route = data.draw(routes(kind_name))
    problem = validate_route_mapping(route, SPECS[kind_name].keys())
    if problem is not None:  # refused at load: what would go wrong is named
        field, message = problem
        assert field.startswith(("input_map.", "options.")) and message
        return
    job_input = KINDS[kind_name].validate(data.draw(valid_input(kind_name)))

    request = map_input(route, job_input)

    # no two values go to one provider field (or one inside the other): none is lost
    values = [p for p, (source, _) in sent_paths(route, job_input) if source != "constant"]
    assert not [(a, b) for i, a in enumerate(values) for b in values[i + 1 :] if overlaps(a, b)]
    check_request(route, job_input, request)


@PROPERTIES
@given(
    first=st.sampled_from(["steps", "cfg_scale", "seed", "negative_prompt"]),
    second=st.sampled_from(["num_images", "sampler", "prompt"]),
    target=st.sampled_from(["x", "extra.x"]),
    nested=st.booleans(),
)
def test_a_route_sending_two_fields_to_one_provider_field_is_refused_at_load(
    first: str, second: str, target: str, nested: bool
) -> None:
    """Else one of the two values would silently be lost (the provider gets the other)."""
    other = f"{target}.deeper" if nested else target
    route = {"provider": "fal", "target": "o/m", "input_map": {first: target, second: other}}
    raw = {"models": [{"id": "m", "kind": "image", "routes": [route]}]}

    with pytest.raises(ConfigError) as caught:
        parse_catalog(raw, KNOWN_PROVIDERS, source="catalog.toml")

    assert "routes[0].input_map" in caught.value.message


@PROPERTIES
@given(
    name=st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True).filter(
        lambda n: n not in SPECS["image"] and n not in SIZE_KEYS
    )
)
def test_an_input_map_entry_for_a_field_the_kind_lacks_is_refused_at_load(name: str) -> None:
    """A misspelt field (``stpes``) would leave the real one going out under its own name."""
    route = {"provider": "fal", "target": "o/m", "input_map": {name: "x"}}
    raw = {"models": [{"id": "m", "kind": "image", "routes": [route]}]}

    with pytest.raises(ConfigError) as caught:
        parse_catalog(raw, KNOWN_PROVIDERS, source="catalog.toml")

    assert f"routes[0].input_map.{name}" in caught.value.message


# -- a model's limits and defaults -------------------------------------------------------------


@PROPERTIES
@given(
    field=st.sampled_from(["width", "height", "steps", "num_images"]),
    bound=st.integers(1, 4096),
    rule=st.sampled_from(["min", "max"]),
    with_default=st.booleans(),
)
def test_a_catalog_loads_only_if_every_default_a_job_can_get_is_within_its_limits(
    field: str, bound: int, rule: str, with_default: bool
) -> None:
    """The model's default, or else the kind's: a job that leaves the field out gets it."""
    spec = SPECS["image"][field]
    default = (spec.lo or 0) + (bound % 7) if with_default else spec.default
    entry: dict[str, Any] = {
        "id": "m",
        "kind": "image",
        "limits": {f"{rule}_{field}": bound},
        "routes": [{"provider": "sandbox", "target": "image"}],
    }
    if with_default:
        entry["defaults"] = {field: default}
    inside = default is None or (default <= bound if rule == "max" else default >= bound)
    valid_default = (
        default is None or spec.lo is None or spec.hi is None or (spec.lo <= default <= spec.hi)
    )

    if inside and valid_default:
        model = parse_catalog({"models": [entry]}, KNOWN_PROVIDERS, source="c").get("m")
        got = model.validate_input({"prompt": "x"})[field]
        assert got is None or (got <= bound if rule == "max" else got >= bound)
        return
    with pytest.raises(ConfigError) as caught:
        parse_catalog({"models": [entry]}, KNOWN_PROVIDERS, source="c")
    assert f"defaults.{field}" in caught.value.message
