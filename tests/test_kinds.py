"""The kinds: canonical inputs with their defaults, bounds, strict types and JSON schema."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.kinds import KINDS, MAX_SEED

IMAGE = KINDS["image"]
VIDEO = KINDS["video"]
UPSCALE = KINDS["upscale"]
FACE_SWAP = KINDS["face_swap"]
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="

#: a minimal valid input for each kind
MINIMAL: dict[str, dict[str, Any]] = {
    "image": {"prompt": "a fox"},
    "video": {"prompt": "a fox running"},
    "upscale": {"image_url": "https://example.com/a.png"},
    "face_swap": {
        "source_image": "https://example.com/s.png",
        "target_image": "https://example.com/t.png",
    },
    "edit": {"image_url": "https://example.com/a.png", "prompt": "make it blue"},
    "refine": {"image_url": "https://example.com/a.png"},
    "face_enhance": {"image_url": "https://example.com/a.png"},
    "detail_enhance": {
        "image_url": "https://example.com/a.png",
        "reference_image_url": "https://example.com/r.png",
    },
    "background_fix": {
        "image_url": "https://example.com/a.png",
        "palette_image_url": "https://example.com/p.png",
    },
    "background_removal": {"image_urls": ["https://example.com/a.png"]},
    "image_adjust": {"image_url": "https://example.com/a.png", "aspect_ratio": 1.5},
    "llm": {"prompt": "hello"},
    "fal_app": {"prompt": "x"},
}


def invalid(kind_name: str, raw: Any, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        KINDS[kind_name].validate(raw, **kwargs)
    return info.value


def test_every_kind_has_a_minimal_input_here() -> None:
    assert set(MINIMAL) == set(KINDS)


@pytest.mark.parametrize("kind_name", sorted(MINIMAL))
def test_minimal_input_is_valid(kind_name: str) -> None:
    data = KINDS[kind_name].validate(MINIMAL[kind_name])
    for key, value in MINIMAL[kind_name].items():
        assert data[key] == value


# -- defaults ---------------------------------------------------------------------------------


def test_image_defaults() -> None:
    data = IMAGE.validate({"prompt": "a fox"})
    assert data["width"] == 1024
    assert data["height"] == 1024
    assert data["num_images"] == 1
    assert data["steps"] is None
    assert data["cfg_scale"] is None
    assert data["sampler"] is None
    assert data["negative_prompt"] is None


def test_video_defaults() -> None:
    data = VIDEO.validate({"prompt": "a fox"})
    assert (data["duration"], data["fps"], data["width"], data["height"]) == (4, 8, 512, 512)
    assert data["image_url"] is None


def test_upscale_defaults() -> None:
    assert UPSCALE.validate(MINIMAL["upscale"])["scale_factor"] == 2


def test_face_swap_takes_exactly_its_two_images() -> None:
    assert set(FACE_SWAP.validate(MINIMAL["face_swap"])) == {"source_image", "target_image"}


def test_model_defaults_replace_kind_defaults_and_request_values_win() -> None:
    defaults = {"steps": 20, "width": 512}
    assert IMAGE.validate({"prompt": "x"}, defaults=defaults)["steps"] == 20
    assert IMAGE.validate({"prompt": "x"}, defaults=defaults)["width"] == 512
    assert IMAGE.validate({"prompt": "x", "steps": 5}, defaults=defaults)["steps"] == 5


def test_null_value_means_the_default() -> None:
    data = IMAGE.validate({"prompt": "x", "width": None}, defaults={"steps": 30})
    assert data["width"] == 1024
    assert IMAGE.validate({"prompt": "x", "steps": None}, defaults={"steps": 30})["steps"] == 30


# -- bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind_name", "field", "value"),
    [
        ("image", "width", 63),
        ("image", "width", 4097),
        ("image", "height", 0),
        ("image", "steps", 0),
        ("image", "steps", 151),
        ("image", "cfg_scale", 50.5),
        ("image", "num_images", 5),
        ("image", "num_images", 0),
        ("image", "seed", -1),
        ("image", "seed", MAX_SEED + 1),
        ("video", "duration", 0),
        ("video", "duration", 61),
        ("video", "fps", 61),
        ("upscale", "scale_factor", 9),
        ("upscale", "scale_factor", 0),
    ],
)
def test_value_out_of_kind_bounds_is_rejected_naming_the_field(
    kind_name: str, field: str, value: Any
) -> None:
    err = invalid(kind_name, {**MINIMAL[kind_name], field: value})
    assert err.param == field
    assert field in err.message


@pytest.mark.parametrize(
    ("field", "value"), [("width", 64), ("width", 4096), ("num_images", 4), ("seed", MAX_SEED)]
)
def test_values_at_the_kind_bounds_are_accepted(field: str, value: int) -> None:
    assert IMAGE.validate({"prompt": "x", field: value})[field] == value


def test_empty_prompt_is_rejected() -> None:
    assert invalid("image", {"prompt": ""}).param == "prompt"


def test_too_long_prompt_is_rejected() -> None:
    assert invalid("image", {"prompt": "x" * 4001}).param == "prompt"


def test_missing_required_field_is_named() -> None:
    err = invalid("image", {"width": 512})
    assert err.param == "prompt"
    assert err.code == "missing_parameter"
    assert "prompt" in err.message


@pytest.mark.parametrize("raw", [None, [], "a fox", 3])
def test_input_that_is_not_an_object_is_rejected(raw: Any) -> None:
    assert invalid("image", raw).param == "input"


#: fal_app's input is the fal app's own parameters: it takes any field by design
@pytest.mark.parametrize("kind_name", sorted(set(MINIMAL) - {"fal_app"}))
def test_unknown_field_is_rejected_naming_it(kind_name: str) -> None:
    err = invalid(kind_name, {**MINIMAL[kind_name], "wdith": 512})
    assert err.param == "wdith"
    assert err.code == "unknown_parameter"
    assert "wdith" in err.message


# -- strict types -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, "512", 512.5, float("nan"), [512]])
def test_int_field_rejects_other_types(value: Any) -> None:
    err = invalid("image", {"prompt": "x", "width": value})
    assert err.param == "width"


def test_int_field_takes_a_number_with_no_fraction_as_the_integer() -> None:
    """JSON does not tell 512.0 from 512, nor does the document's JSON Schema ("integer")."""
    data = IMAGE.validate({"prompt": "x", "width": 512.0, "steps": 20.0, "seed": 7.0})
    assert (data["width"], data["steps"], data["seed"]) == (512, 20, 7)
    assert all(type(data[name]) is int for name in ("width", "steps", "seed"))
    assert invalid("image", {"prompt": "x", "width": 1e300}).param == "width"  # out of bounds


@pytest.mark.parametrize("value", [True, "7"])
def test_float_field_rejects_bool_and_str(value: Any) -> None:
    assert invalid("image", {"prompt": "x", "cfg_scale": value}).param == "cfg_scale"


def test_float_field_accepts_an_int() -> None:
    assert IMAGE.validate({"prompt": "x", "cfg_scale": 7})["cfg_scale"] == 7


@pytest.mark.parametrize("value", [42, True, ["a fox"]])
def test_prompt_must_be_a_string(value: Any) -> None:
    assert invalid("image", {"prompt": value}).param == "prompt"


@pytest.mark.parametrize("value", [True, "5"])
def test_seed_rejects_bool_and_str(value: Any) -> None:
    assert invalid("image", {"prompt": "x", "seed": value}).param == "seed"


# -- URLs -------------------------------------------------------------------------------------

URL_FIELDS = [
    ("upscale", "image_url"),
    ("video", "image_url"),
    ("face_swap", "source_image"),
    ("face_swap", "target_image"),
]


@pytest.mark.parametrize(("kind_name", "field"), URL_FIELDS)
@pytest.mark.parametrize(
    "url", ["http://example.com/a.png", "https://example.com/a.png", "HTTPS://x.io/a", PNG_DATA_URL]
)
def test_url_field_accepts_http_https_and_data(kind_name: str, field: str, url: str) -> None:
    assert KINDS[kind_name].validate({**MINIMAL[kind_name], field: url})[field] == url


@pytest.mark.parametrize(("kind_name", "field"), URL_FIELDS)
@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "/relative/path.png",
        "example.com/a.png",
        "",
    ],
)
def test_url_field_rejects_other_schemes(kind_name: str, field: str, url: str) -> None:
    err = invalid(kind_name, {**MINIMAL[kind_name], field: url})
    assert err.param == field


def test_url_field_rejects_non_string() -> None:
    assert invalid("upscale", {"image_url": 5}).param == "image_url"


# -- model limits -----------------------------------------------------------------------------


def test_model_max_limit_is_enforced_and_named() -> None:
    err = invalid("image", {"prompt": "x", "width": 3000}, limits={"max_width": 2048})
    assert err.param == "width"
    assert err.code == "out_of_range"
    assert "2048" in err.message


def test_model_limit_error_names_the_tighter_bound_not_the_kinds() -> None:
    err = invalid("image", {"prompt": "x", "width": 5000}, limits={"max_width": 2048})
    assert "2048" in err.message
    assert "4096" not in err.message


def test_model_min_limit_is_enforced_and_named() -> None:
    err = invalid("image", {"prompt": "x", "steps": 5}, limits={"min_steps": 10})
    assert err.param == "steps"
    assert "10" in err.message


def test_model_limit_applies_to_model_defaults_too() -> None:
    err = invalid("image", {"prompt": "x"}, defaults={"width": 1024}, limits={"max_width": 512})
    assert err.param == "width"


def test_value_within_model_limits_is_accepted() -> None:
    data = IMAGE.validate({"prompt": "x", "width": 2048}, limits={"max_width": 2048})
    assert data["width"] == 2048


def test_model_limit_never_widens_the_kinds_bound() -> None:
    err = invalid("image", {"prompt": "x", "width": 5000}, limits={"max_width": 8192})
    assert err.param == "width"


def test_model_limit_skips_a_bool_and_lets_the_type_check_reject_it() -> None:
    err = invalid("image", {"prompt": "x", "num_images": True}, limits={"max_num_images": 0})
    assert err.param == "num_images"
    assert err.code != "out_of_range"


# -- seed -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind_name", ["image", "video"])
def test_seed_is_chosen_when_omitted(kind_name: str) -> None:
    seeds = {KINDS[kind_name].validate(MINIMAL[kind_name])["seed"] for _ in range(5)}
    assert all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds)
    assert len(seeds) > 1, "the seed should be random"


@pytest.mark.parametrize("kind_name", ["image", "video"])
def test_seed_is_kept_when_given(kind_name: str) -> None:
    assert KINDS[kind_name].validate({**MINIMAL[kind_name], "seed": 0})["seed"] == 0
    assert KINDS[kind_name].validate({**MINIMAL[kind_name], "seed": 1234})["seed"] == 1234


def test_kinds_without_a_seed_get_no_seed() -> None:
    assert "seed" not in UPSCALE.validate(MINIMAL["upscale"])
    assert "seed" not in FACE_SWAP.validate(MINIMAL["face_swap"])


# -- param_prefix -----------------------------------------------------------------------------


def test_param_prefix_is_put_before_field_names_in_errors() -> None:
    bound = invalid("image", {"prompt": "x", "width": 1}, param_prefix="input.")
    unknown = invalid("image", {"prompt": "x", "colour": 1}, param_prefix="input.")
    missing = invalid("image", {}, param_prefix="input.")
    limit = invalid(
        "image", {"prompt": "x", "width": 600}, limits={"max_width": 512}, param_prefix="input."
    )
    assert bound.param == "input.width" and "input.width" in bound.message
    assert unknown.param == "input.colour" and "input.colour" in unknown.message
    assert missing.param == "input.prompt"
    assert limit.param == "input.width" and "input.width" in limit.message


# -- parameters(): the JSON schema ------------------------------------------------------------


def test_parameters_schema_is_a_closed_object_with_required_fields() -> None:
    schema = IMAGE.parameters({}, {})
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["prompt"]
    assert set(schema["properties"]) == set(IMAGE.input_model.model_fields)


def test_parameters_carry_kind_defaults_and_bounds() -> None:
    props = IMAGE.parameters({}, {})["properties"]
    assert props["width"]["type"] == "integer"
    assert props["width"]["default"] == 1024
    assert props["width"]["minimum"] == 64
    assert props["width"]["maximum"] == 4096
    assert "description" in props["width"]


def test_parameters_carry_model_defaults_and_bounds() -> None:
    props = IMAGE.parameters(
        {"steps": 20, "cfg_scale": 7.0}, {"max_width": 2048, "min_steps": 4.0, "max_cfg_scale": 9.5}
    )["properties"]
    assert props["steps"]["default"] == 20
    assert props["cfg_scale"]["default"] == 7.0
    assert props["width"]["maximum"] == 2048
    assert props["steps"]["minimum"] == 4
    assert isinstance(props["steps"]["minimum"], int)
    assert props["cfg_scale"]["maximum"] == 9.5


def test_parameters_show_optional_fields_plainly_as_nullable() -> None:
    props = IMAGE.parameters({}, {})["properties"]
    assert props["steps"]["type"] == "integer"
    assert props["steps"]["nullable"] is True
    assert "anyOf" not in props["steps"]
    assert all("title" not in p for p in props.values())


def test_parameters_do_not_change_the_kinds_own_schema() -> None:
    IMAGE.parameters({"steps": 20}, {"max_width": 100})
    assert IMAGE.parameters({}, {})["properties"]["width"]["maximum"] == 4096


# -- images sent inline (data: URLs), checked when the job is submitted ------------------------

NOT_AN_IMAGE_URL = "data:image/png;base64,aGVsbG8sIHdvcmxk"  # "hello, world"
#: every field of every kind that holds images (a URL or a list of them)
IMAGE_FIELDS = [(k.name, f) for k in KINDS.values() for f in k.input_model.image_fields]


def with_image(kind_name: str, field: str, value: str) -> dict[str, Any]:
    raw = dict(MINIMAL[kind_name])
    raw[field] = [value] if field.endswith("_urls") else value
    return raw


def test_every_url_field_of_every_kind_is_an_image_field() -> None:
    """A new URL field left out of ``image_fields`` would let bad inline images through."""
    urls = {
        (k.name, name)
        for k in KINDS.values()
        for name in k.input_model.model_fields
        if name.endswith(("_url", "_urls", "_image"))
    }
    assert set(IMAGE_FIELDS) == urls
    assert ("upscale", "image_url") in urls and ("edit", "reference_image_urls") in urls


@pytest.mark.parametrize(("kind_name", "field"), IMAGE_FIELDS)
def test_an_inline_image_that_is_not_one_is_refused_naming_the_field(
    kind_name: str, field: str
) -> None:
    err = invalid(kind_name, with_image(kind_name, field, NOT_AN_IMAGE_URL), param_prefix="input.")
    suffix = ".0" if field.endswith("_urls") else ""
    assert err.param == f"input.{field}{suffix}"
    assert err.code == "media_type_mismatch"
    assert err.status_code == 400


@pytest.mark.parametrize(("kind_name", "field"), IMAGE_FIELDS)
def test_an_inline_image_over_the_limit_is_a_413_naming_the_field_and_the_limit(
    kind_name: str, field: str
) -> None:
    big = "data:image/png;base64," + "A" * 4000
    with pytest.raises(PayloadTooLarge) as info:
        KINDS[kind_name].validate(with_image(kind_name, field, big), max_input_bytes=1024)
    assert info.value.param is not None and info.value.param.startswith(field)
    assert "1024" in info.value.message


def test_the_item_of_a_list_of_images_is_named() -> None:
    raw = {**MINIMAL["edit"], "reference_image_urls": [PNG_DATA_URL, NOT_AN_IMAGE_URL]}
    assert invalid("edit", raw).param == "reference_image_urls.1"


def test_inline_images_within_the_limit_and_urls_pass_unchanged() -> None:
    raw = {"image_url": PNG_DATA_URL, "scale_factor": 2}
    assert UPSCALE.validate(raw, max_input_bytes=1024)["image_url"] == PNG_DATA_URL
    long_url = "https://example.com/" + "a" * 5000
    assert UPSCALE.validate({"image_url": long_url}, max_input_bytes=1024)["image_url"] == long_url
