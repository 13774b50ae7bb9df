"""The catalog: the shipped file loads, and every mistake in a catalog names file, model, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.catalog import Catalog, load_catalog
from gateway.errors import ConfigError, UnknownModel
from gateway.kinds import KINDS
from providers.registry import KNOWN_PROVIDERS
from tests.test_kinds import MINIMAL

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "catalog.toml"
PROVIDERS = ("sandbox", "fal")

ROUTE = '[[models.routes]]\nprovider = "sandbox"\ntarget = "image"\n'


def model(body: str, routes: str = ROUTE, model_id: str = "my-model") -> str:
    return f'[[models]]\nid = "{model_id}"\n{body}\n{routes}'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_catalog(path, PROVIDERS)
    return info.value.message


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog(SHIPPED, KNOWN_PROVIDERS)


# -- the shipped catalog ----------------------------------------------------------------------


def test_shipped_catalog_loads(shipped: Catalog) -> None:
    assert len(shipped) > 0
    assert shipped.source == str(SHIPPED)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_shipped_catalog_has_a_sandbox_model_for_every_kind(shipped: Catalog, kind: str) -> None:
    sandbox = [
        m for m in shipped if m.kind.name == kind and all(r.provider == "sandbox" for r in m.routes)
    ]
    assert sandbox, f"no sandbox model of kind {kind}"


def test_shipped_sandbox_models_say_they_are_for_development_and_testing(
    shipped: Catalog,
) -> None:
    sandbox = [m for m in shipped if m.lane == "sandbox"]
    assert sandbox
    for m in sandbox:
        assert "for development and testing" in m.description.lower(), m.id


def test_shipped_defaults_are_valid_inputs(shipped: Catalog) -> None:
    for m in shipped:
        m.validate_input(MINIMAL[m.kind.name])


# -- loading a catalog ------------------------------------------------------------------------


def test_valid_catalog_resolves_models_with_their_routes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        model(
            'kind = "image"\ndefaults = { steps = 12, width = 512 }\nlimits = { max_width = 512 }',
            routes=ROUTE + '[[models.routes]]\nprovider = "fal"\ntarget = "fal-ai/flux"\n'
            'input_map = { prompt = "text" }\n',
        ),
    )
    catalog = load_catalog(path, PROVIDERS)
    m = catalog.get("my-model")
    assert m.kind is KINDS["image"]
    assert m.lane == "sandbox"
    assert [r.name for r in m.routes] == ["sandbox:image", "fal:fal-ai/flux"]
    assert m.routes[1].input_map == {"prompt": "text"}
    assert m.defaults == {"steps": 12, "width": 512}
    assert m.limits == {"max_width": 512}
    assert m.owned_by == "sandbox"
    assert m.created > 0
    assert m.validate_input({"prompt": "x"})["steps"] == 12
    assert m.parameters()["properties"]["width"]["maximum"] == 512


def test_unknown_model_id_raises_unknown_model(shipped: Catalog) -> None:
    with pytest.raises(UnknownModel) as info:
        shipped.get("no-such-model")
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    assert "no-such-model" in info.value.message


# -- every mistake names file, model and field -------------------------------------------------


def assert_names(message: str, path: Path, model_id: str, field: str) -> None:
    assert str(path) in message, message
    assert f"'{model_id}'" in message, message
    assert field in message, message


def test_unknown_kind_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "audio"'))
    message = config_error(path)
    assert_names(message, path, "my-model", "kind")
    assert "audio" in message


def test_missing_routes_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"', routes=""))
    assert_names(config_error(path), path, "my-model", "routes")


def test_empty_routes_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"\nroutes = []', routes=""))
    assert_names(config_error(path), path, "my-model", "routes")


def test_unknown_provider_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        model(
            'kind = "image"', routes=ROUTE + '[[models.routes]]\nprovider = "nope"\ntarget = "x"\n'
        ),
    )
    message = config_error(path)
    assert_names(message, path, "my-model", "routes[1].provider")
    assert "nope" in message


def test_misspelt_model_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"\ndescripton = "typo"'))
    assert_names(config_error(path), path, "my-model", "descripton")


def test_misspelt_route_field_is_named(tmp_path: Path) -> None:
    routes = '[[models.routes]]\nprovider = "sandbox"\ntarget = "image"\noptons = {}\n'
    path = write(tmp_path, model('kind = "image"', routes=routes))
    assert_names(config_error(path), path, "my-model", "routes[0].optons")


def test_misspelt_top_level_table_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[[model]]\nid = "x"\n')
    message = config_error(path)
    assert str(path) in message
    assert "'model'" in message


@pytest.mark.parametrize("value", ['"big"', "true", "10", "5000"])
def test_bad_defaults_value_is_named(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, model(f'kind = "image"\ndefaults = {{ width = {value} }}'))
    assert_names(config_error(path), path, "my-model", "defaults.width")


def test_default_outside_the_models_own_limits_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        model('kind = "image"\ndefaults = { width = 2048 }\nlimits = { max_width = 1024 }'),
    )
    assert_names(config_error(path), path, "my-model", "defaults.width")


def test_a_limit_that_excludes_the_kinds_default_needs_a_model_default(tmp_path: Path) -> None:
    """Else a request that leaves the field out would run at the kind's default (an image of
    1024 pixels wide), beyond the limit the operator set for this model."""
    path = write(tmp_path, model('kind = "image"\nlimits = { max_width = 512 }'))
    message = config_error(path)
    assert_names(message, path, "my-model", "defaults.width")
    assert "1024" in message and "max_width" in message
    fixed = write(
        tmp_path, model('kind = "image"\ndefaults = { width = 512 }\nlimits = { max_width = 512 }')
    )
    assert (
        load_catalog(fixed, PROVIDERS).get("my-model").validate_input({"prompt": "x"})["width"]
        == 512
    )


def test_unknown_defaults_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"\ndefaults = { colour = "red" }'))
    assert_names(config_error(path), path, "my-model", "defaults.colour")


@pytest.mark.parametrize("key", ["maximum_width", "max_prompt", "max_colour", "width"])
def test_bad_limits_key_is_named(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, model(f'kind = "image"\nlimits = {{ {key} = 5 }}'))
    assert_names(config_error(path), path, "my-model", f"limits.{key}")


def test_non_numeric_limit_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"\nlimits = { max_width = "big" }'))
    assert_names(config_error(path), path, "my-model", "limits.max_width")


def test_duplicate_id_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"') + "\n" + model('kind = "video"'))
    message = config_error(path)
    assert_names(message, path, "my-model", "id")
    assert "twice" in message


def test_invalid_model_id_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"', model_id="bad id!"))
    assert_names(config_error(path), path, "bad id!", "id")


def test_error_in_a_later_model_names_that_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        model('kind = "image"', model_id="good") + "\n" + model('kind = "nope"', model_id="bad"),
    )
    message = config_error(path)
    assert_names(message, path, "bad", "kind")
    assert "'good'" not in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[[models]\nid = ")
    message = config_error(path)
    assert str(path) in message
    assert "TOML" in message


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "catalog.toml"
    assert str(path) in config_error(path)


@pytest.mark.parametrize("value", ["0", "-5", '"10"', "true", "inf"])
def test_a_bad_route_timeout_is_named_with_its_route(tmp_path: Path, value: str) -> None:
    routes = ROUTE + f"options = {{ timeout_seconds = {value} }}\n"
    message = config_error(write(tmp_path, model('kind = "image"', routes)))
    assert "model 'my-model'" in message and "routes[0].options.timeout_seconds" in message


def test_a_route_timeout_in_seconds_is_accepted(tmp_path: Path) -> None:
    routes = ROUTE + "options = { timeout_seconds = 90 }\n"
    catalog = load_catalog(write(tmp_path, model('kind = "image"', routes)), PROVIDERS)
    assert catalog.get("my-model").routes[0].options["timeout_seconds"] == 90


def test_a_misspelt_route_option_is_named_with_its_route(tmp_path: Path) -> None:
    routes = ROUTE + ROUTE.replace("sandbox", "fal").replace('"image"', '"fal-ai/flux/dev"')
    routes += 'options = { size = "image_size", start_timout = 60 }\n'
    path = write(tmp_path, model('kind = "image"', routes))

    message = config_error(path)

    assert_names(message, path, "my-model", "routes[1].options.start_timout")
    assert "fal" in message and "start_timeout" in message  # what it takes, spelt right


def test_an_option_of_another_provider_is_refused(tmp_path: Path) -> None:
    routes = ROUTE + "options = { deployment = true }\n"  # Replicate's, on a sandbox route
    message = config_error(write(tmp_path, model('kind = "image"', routes)))
    assert "routes[0].options.deployment" in message


# -- interchangeable routes (route_choice) ----------------------------------------------------

PRICED = ROUTE + 'price = { amount = 0.01, unit = "image" }\n'
OTHER = PRICED.replace('"image"\n', '"image-2"\n', 1).replace("0.01", "0.02")


def test_interchangeable_routes_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"\nroute_choice = "cheapest"', PRICED + OTHER))
    found = load_catalog(path, PROVIDERS).get("my-model")
    assert found.interchangeable and found.route_choice == "cheapest"
    assert [r.target for r in found.routes] == ["image", "image-2"]


def test_routes_run_in_order_by_default(tmp_path: Path) -> None:
    found = load_catalog(write(tmp_path, model('kind = "image"')), PROVIDERS).get("my-model")
    assert found.route_choice == "in_order" and not found.interchangeable


def test_a_per_job_route_chain_runs_in_the_order_given(tmp_path: Path) -> None:
    path = write(tmp_path, model('kind = "image"\nroute_choice = "cheapest"', PRICED + OTHER))
    found = load_catalog(path, PROVIDERS).get("my-model")
    assert not found.with_routes(list(reversed(found.routes))).interchangeable


@pytest.mark.parametrize(
    ("choice", "routes", "words"),
    [
        ('"fastest"', PRICED + OTHER, "'in_order' or 'cheapest'"),
        ("true", PRICED + OTHER, "'in_order' or 'cheapest'"),
        ('"cheapest"', PRICED, "this model has one route"),
        (
            '"cheapest"',
            ROUTE + ROUTE.replace('"image"\n', '"image-2"\n', 1),
            "none of this model's",
        ),
    ],
)
def test_a_bad_route_choice_is_named(tmp_path: Path, choice: str, routes: str, words: str) -> None:
    path = write(tmp_path, model(f'kind = "image"\nroute_choice = {choice}', routes))
    message = config_error(path)
    assert_names(message, path, "my-model", "route_choice")
    assert words in message, message


def test_a_price_given_in_a_later_model_counts_for_route_choice(tmp_path: Path) -> None:
    plain = ROUTE + ROUTE.replace('"image"\n', '"image-2"\n', 1)
    text = model('kind = "image"\nroute_choice = "cheapest"', plain, "first")
    text += "\n" + model('kind = "image"', PRICED, "second")
    catalog = load_catalog(write(tmp_path, text), PROVIDERS)
    assert catalog.get("first").interchangeable  # its sandbox:image is priced, by "second"
