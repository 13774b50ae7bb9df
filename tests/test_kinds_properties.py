"""Properties of the kinds' input validation (gateway/kinds.py), for every kind, by Hypothesis.

What a client sees: an input within the kind's rules is accepted with its values kept and the
defaults filled in, and the answer is itself a valid input that validates to the same thing
(so a stored job can be validated again, or resubmitted, without drifting). Anything else is
an ``InvalidRequest`` (a 400) whose ``param`` and message name the offending field; no input
makes the validator raise anything else (which a face would turn into a 500).

The strategies are made from each kind's own pydantic fields (types, bounds, lengths,
choices), so a field added to a kind is covered without touching this file. Runs are
derandomized (the same examples on every run) and small, so CI cannot flake.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.kinds import KINDS, MAX_SEED, Kind

PROPERTIES = settings(
    derandomize=True,
    database=None,
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
#: for the tests run once per field of every kind (there are about seventy fields)
PER_FIELD = settings(PROPERTIES, max_examples=6)

#: kinds with a closed set of fields (fal_app passes whatever it is given to the fal app)
CLOSED_KINDS = sorted(name for name in KINDS if name != "fal_app")
#: fields checked by the URL rule (http, https or data:)
URL_FIELD_NAMES = frozenset(
    {
        "image_url",
        "image_urls",
        "reference_image_url",
        "reference_image_urls",
        "palette_image_url",
        "mask_url",
        "source_image",
        "target_image",
    }
)
PREFIXES = ("", "input.", "task_params.")


# -- the fields of a kind, read from its pydantic model ---------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    name: str
    base: Any  # int, float, str, bool, list, or a tuple of Literal choices
    optional: bool  # None is accepted (and means the default)
    required: bool
    default: Any
    lo: float | None = None
    lo_open: bool = False  # gt rather than ge
    hi: float | None = None
    min_len: int | None = None
    max_len: int | None = None

    @property
    def is_url(self) -> bool:
        return self.name in URL_FIELD_NAMES

    @property
    def numeric(self) -> bool:
        return self.base in (int, float)


def field_specs(kind: Kind) -> dict[str, FieldSpec]:
    specs = {}
    for name, info in kind.input_model.model_fields.items():
        annotation = info.annotation
        optional = False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = len(args) < len(typing.get_args(annotation))
            (annotation,) = args
        if typing.get_origin(annotation) is typing.Literal:
            base: Any = typing.get_args(annotation)
        elif typing.get_origin(annotation) is list:
            base = list
        else:
            base = annotation
        bounds: dict[str, Any] = {}
        for rule in info.metadata:
            if isinstance(rule, Ge):
                bounds["lo"] = rule.ge
            elif isinstance(rule, Gt):
                bounds["lo"], bounds["lo_open"] = rule.gt, True
            elif isinstance(rule, Le):
                bounds["hi"] = rule.le
            elif isinstance(rule, MinLen):
                bounds["min_len"] = rule.min_length
            elif isinstance(rule, MaxLen):
                bounds["max_len"] = rule.max_length
        default = info.get_default(call_default_factory=True)
        specs[name] = FieldSpec(name, base, optional, info.is_required(), default, **bounds)
    return specs


SPECS = {name: field_specs(KINDS[name]) for name in CLOSED_KINDS}


def test_the_specs_understand_every_field_of_every_kind() -> None:
    """The strategies below cover every field: no type is left unknown."""
    for specs in SPECS.values():
        for spec in specs.values():
            assert spec.base in (int, float, str, bool, list) or isinstance(spec.base, tuple)
            if spec.base is list or spec.is_url:
                assert spec.is_url, spec  # the only lists are lists of URLs


# -- strategies --------------------------------------------------------------------------------

#: text that JSON (orjson) carries: no lone surrogates
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
URLS = st.one_of(
    st.builds(
        "{}://{}.example/{}".format,
        st.sampled_from(["http", "https", "HTTP", "Https"]),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9._~/-]{0,30}", fullmatch=True),
    ),
    st.just("data:image/png;base64,iVBORw0KGgo="),
)


def valid_value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if isinstance(spec.base, tuple):
        return st.sampled_from(spec.base)
    if spec.base is bool:
        return st.booleans()
    if spec.base is list:
        return st.lists(URLS, min_size=spec.min_len or 0, max_size=min(spec.max_len or 4, 4))
    if spec.is_url:
        return URLS
    if spec.base is str:
        lo, hi = spec.min_len or 0, spec.max_len
        short = st.text(st.characters(exclude_categories=["Cs"]), min_size=lo, max_size=12)
        return short if hi is None else short.filter(lambda s: len(s) <= hi) | st.just("é" * hi)
    lo = spec.lo if spec.lo is not None else -(2**31)
    hi = spec.hi if spec.hi is not None else 2**31
    if spec.base is int:
        ints = st.integers(math.ceil(lo) + spec.lo_open, int(hi))
        return ints | st.sampled_from([math.ceil(lo) + spec.lo_open, int(hi)])
    floats = st.floats(lo, hi, exclude_min=spec.lo_open, allow_nan=False)
    # a float field takes an int too (JSON has one number type)
    whole = st.integers(math.ceil(lo) + (spec.lo_open and lo == math.ceil(lo)), int(hi))
    return floats | whole


@st.composite
def valid_input(draw: st.DrawFn, kind_name: str) -> dict[str, Any]:
    """An input the kind accepts: every required field, some optional ones, some as null."""
    specs = SPECS[kind_name]
    raw: dict[str, Any] = {}
    for name, spec in specs.items():
        if kind_name == "image_adjust" and name in (
            "aspect_ratio",
            "target_width",
            "target_height",
        ):
            continue
        if kind_name == "image_adjust" and name.startswith("margin_"):
            continue  # accepted by validation, refused by the adjuster: not this file's concern
        if spec.required or draw(st.booleans()):
            null = spec.optional and draw(st.integers(0, 4)) == 0  # null: "the default"
            raw[name] = None if null else draw(valid_value(spec))
    if kind_name == "image_adjust":  # exactly one target: a ratio, or a width and a height
        if draw(st.booleans()):
            raw["aspect_ratio"] = draw(valid_value(specs["aspect_ratio"]))
        else:
            raw["target_width"] = draw(valid_value(specs["target_width"]))
            raw["target_height"] = draw(valid_value(specs["target_height"]))
    if kind_name == "background_fix":  # the shadow threshold is not above the light one
        light = raw.get("light_threshold")
        shadow = raw.get("shadow_threshold")
        light = specs["light_threshold"].default if light is None else light
        shadow = specs["shadow_threshold"].default if shadow is None else shadow
        if shadow > light:
            raw["light_threshold"], raw["shadow_threshold"] = shadow, light
    return raw


def json_values(leaves: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """Any value a JSON body (as orjson reads it) can carry."""
    scalars = leaves or st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        TEXT,
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(TEXT, inner, max_size=2),
        max_leaves=4,
    )


def ill_typed(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """JSON values of a type the field does not take (null is not one: it means default)."""
    nested = st.lists(st.integers(), max_size=2) | st.dictionaries(TEXT, st.integers(), max_size=2)
    if spec.base is bool:
        return st.integers() | TEXT | st.floats(allow_nan=False) | nested
    if spec.base is int:
        return (
            st.booleans()
            | TEXT
            # 5.0 is the integer 5 (as in JSON Schema); a fraction or an infinity is not one
            | st.floats(allow_nan=False).filter(lambda number: not number.is_integer())
            | nested
        )
    if spec.base is float:
        return st.booleans() | TEXT | nested
    if spec.base is list:
        return (
            TEXT
            | st.integers()
            | st.dictionaries(TEXT, TEXT, max_size=2)
            | st.lists(st.integers() | st.booleans(), min_size=1, max_size=2)
        )
    return st.booleans() | st.integers() | st.floats(allow_nan=False) | nested  # str, Literal


def out_of_bounds(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values of the field's type just beyond, or far beyond, one of its bounds."""
    options = []
    if spec.base is int:
        if spec.lo is not None:
            edge = math.ceil(spec.lo) - (0 if spec.lo_open else 1)
            options.append(st.integers(-(2**63), edge))
        if spec.hi is not None:
            options.append(st.integers(int(spec.hi) + 1, 2**64 - 1))
    elif spec.base is float:
        if spec.lo is not None:
            below = st.floats(max_value=spec.lo, exclude_max=not spec.lo_open, allow_nan=False)
            options.append(below)
        if spec.hi is not None:
            options.append(st.floats(min_value=spec.hi, exclude_min=True, allow_nan=False))
    elif spec.base is str and spec.max_len is not None:
        options.append(st.integers(1, 50).map(lambda n: "y" * (spec.max_len or 0) + "z" * n))
    elif spec.base is list and spec.max_len is not None:
        options.append(st.lists(URLS, min_size=spec.max_len + 1, max_size=spec.max_len + 3))
    elif isinstance(spec.base, tuple):
        options.append(TEXT.filter(lambda s: s not in spec.base))
    return st.one_of(options) if options else st.nothing()


def minimal(kind_name: str) -> dict[str, Any]:
    """The smallest valid input: the required fields (and image_adjust's target)."""
    example: dict[str, Any] = {}
    for name, spec in SPECS[kind_name].items():
        if spec.required:
            if spec.base is list:
                example[name] = ["https://example.com/a.png"]
            elif spec.is_url:
                example[name] = "https://example.com/a.png"
            else:
                example[name] = "a fox"
    if kind_name == "image_adjust":
        example["aspect_ratio"] = 1.5
    return example


def rejected(kind_name: str, raw: Any, **kwargs: Any) -> InvalidRequest:
    """The ``InvalidRequest`` ``raw`` is refused with; any other outcome fails the test."""
    with pytest.raises(InvalidRequest) as caught:
        KINDS[kind_name].validate(raw, **kwargs)
    error = caught.value
    assert error.status_code == 400
    assert error.param is not None, error.message  # "" for a field named "" ({"": 1})
    assert f"'{error.param}'" in error.message, (error.param, error.message)
    return error


def names_field(error: InvalidRequest, field: str, prefix: str = "") -> bool:
    """The error's ``param`` is the field, or an item of it (``image_urls.2``)."""
    param = error.param or ""
    return param == prefix + field or param.startswith(f"{prefix}{field}.")


# -- valid inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind_name", CLOSED_KINDS)
@PROPERTIES
@given(data=st.data())
def test_a_valid_input_is_accepted_with_its_values_kept_and_defaults_filled(
    kind_name: str, data: st.DataObject
) -> None:
    """And the answer validates to itself, also after a JSON round trip: jobs are stored as
    JSON, and a stored input must not drift when it is read and validated again."""
    raw = data.draw(valid_input(kind_name))
    kind = KINDS[kind_name]

    out = kind.validate(raw)

    specs = SPECS[kind_name]
    assert set(out) == set(specs)  # every field, and nothing else
    for name, spec in specs.items():
        given_value = raw.get(name)
        if given_value is not None:
            assert out[name] == given_value, name
            assert type(out[name]) is (float if spec.base is float else type(given_value))
        elif name == "seed":
            assert isinstance(out[name], int) and 0 <= out[name] <= MAX_SEED
        else:
            assert out[name] == spec.default, name
    assert kind.validate(out) == out
    assert kind.validate(orjson.loads(orjson.dumps(out))) == out


@pytest.mark.parametrize("kind_name", CLOSED_KINDS)
@PROPERTIES
@given(data=st.data())
def test_model_defaults_fill_what_the_request_leaves_out(
    kind_name: str, data: st.DataObject
) -> None:
    """A catalog model's defaults replace the kind's; a value in the request wins."""
    specs = SPECS[kind_name]
    # fields related to others are left to the request (a default of one of them could
    # contradict the request's value of another)
    related = {"light_threshold", "shadow_threshold", "aspect_ratio", "target_width"}
    related |= {"target_height"}
    defaults = {
        name: value
        for name, value in data.draw(valid_input(kind_name)).items()
        if value is not None and not specs[name].required and name not in related
    }
    raw = data.draw(valid_input(kind_name))
    merged = {**defaults, **{k: v for k, v in raw.items() if v is not None}}

    out = KINDS[kind_name].validate(raw, defaults=defaults)

    for name, value in merged.items():
        assert out[name] == value, name
    assert KINDS[kind_name].validate(out, defaults=defaults) == out


# -- invalid inputs ----------------------------------------------------------------------------


def _bounded_fields(kind_name: str) -> list[str]:
    return [
        name
        for name, spec in SPECS[kind_name].items()
        if (spec.numeric and (spec.lo is not None or spec.hi is not None))
        or (spec.base in (str, list) and spec.max_len is not None)
        or isinstance(spec.base, tuple)
    ]


BOUNDED = [(kind, field) for kind in CLOSED_KINDS for field in _bounded_fields(kind)]


@pytest.mark.parametrize(("kind_name", "field"), BOUNDED)
@PER_FIELD
@given(data=st.data())
def test_a_value_beyond_a_bound_is_refused_naming_the_field(
    kind_name: str, field: str, data: st.DataObject
) -> None:
    spec = SPECS[kind_name][field]
    value = data.draw(out_of_bounds(spec), label=field)
    prefix = data.draw(st.sampled_from(PREFIXES))
    raw = {**minimal(kind_name), field: value}
    if kind_name == "image_adjust" and field in ("target_width", "target_height"):
        raw.pop("aspect_ratio")
        raw.setdefault("target_width", 100)
        raw.setdefault("target_height", 100)

    error = rejected(kind_name, raw, param_prefix=prefix)

    assert names_field(error, field, prefix), (error.param, error.message)


@pytest.mark.parametrize(("kind_name", "field"), [(k, f) for k in CLOSED_KINDS for f in SPECS[k]])
@PER_FIELD
@given(data=st.data())
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(
    kind_name: str, field: str, data: st.DataObject
) -> None:
    value = data.draw(ill_typed(SPECS[kind_name][field]), label=field)
    prefix = data.draw(st.sampled_from(PREFIXES))

    error = rejected(kind_name, {**minimal(kind_name), field: value}, param_prefix=prefix)

    assert names_field(error, field, prefix), (error.param, error.message)


URL_FIELDS = [(k, f) for k in CLOSED_KINDS for f, spec in SPECS[k].items() if spec.is_url]


@pytest.mark.parametrize(("kind_name", "field"), URL_FIELDS)
@PER_FIELD
@given(data=st.data())
def test_a_non_url_in_a_url_field_is_refused_naming_the_field(
    kind_name: str, field: str, data: st.DataObject
) -> None:
    bad = data.draw(
        TEXT.filter(lambda s: s.partition(":")[0].lower() not in ("http", "https", "data"))
        | st.sampled_from(["file:///etc/passwd", "ftp://x/a.png", "gopher://x", "//x/a.png"])
    )
    value = [bad] if SPECS[kind_name][field].base is list else bad

    error = rejected(kind_name, {**minimal(kind_name), field: value})

    assert names_field(error, field)


@pytest.mark.parametrize("kind_name", CLOSED_KINDS)
@PROPERTIES
@given(data=st.data())
def test_an_unknown_field_is_refused_naming_it(kind_name: str, data: st.DataObject) -> None:
    name = data.draw(TEXT.filter(lambda s: s not in SPECS[kind_name]), label="name")
    value = data.draw(st.integers() | TEXT | st.lists(st.booleans(), max_size=2))

    error = rejected(kind_name, {**minimal(kind_name), name: value})

    assert error.param == name and error.code == "unknown_parameter"


@pytest.mark.parametrize("kind_name", CLOSED_KINDS)
@PROPERTIES
@given(data=st.data())
def test_a_missing_required_field_is_refused_naming_it(kind_name: str, data: st.DataObject) -> None:
    required = [n for n, s in SPECS[kind_name].items() if s.required]
    field = data.draw(st.sampled_from(required))
    raw = minimal(kind_name)
    if data.draw(st.booleans()):
        del raw[field]
    else:
        raw[field] = None  # null means "the default", and there is none

    error = rejected(kind_name, raw)

    assert error.param == field and error.code == "missing_parameter"


# -- anything at all ---------------------------------------------------------------------------


def _arbitrary_input(kind_name: str) -> st.SearchStrategy[Any]:
    """Anything a JSON body could hold as ``input``: mostly objects, often with the kind's
    own field names holding arbitrary values, so the field checks themselves are reached."""
    names = st.sampled_from(sorted(SPECS.get(kind_name, {}) or {"prompt": None})) | TEXT
    objects = st.dictionaries(names, json_values(), max_size=6)
    near_valid = st.builds(
        lambda base, extra: {**base, **extra},
        valid_input(kind_name) if kind_name in SPECS else st.just({}),
        objects,
    )
    return near_valid | objects | json_values()


@pytest.mark.parametrize("kind_name", sorted(KINDS))
@settings(PROPERTIES, max_examples=15)
@given(data=st.data())
def test_any_json_input_is_accepted_or_refused_with_a_400_never_anything_else(
    kind_name: str, data: st.DataObject
) -> None:
    raw = data.draw(_arbitrary_input(kind_name))
    # limits a catalog can have: the kind's defaults are within them (checked at load)
    limits = data.draw(st.sampled_from([{}, {"max_width": 2048.0, "min_steps": 4.0}]))
    kind = KINDS[kind_name]

    try:
        out = kind.validate(raw, limits=limits, param_prefix="input.")
    except InvalidRequest as error:
        assert error.status_code == 400
        assert error.param and f"'{error.param}'" in error.message
        assert error.param == "input" or error.param.startswith("input.")
        return
    assert isinstance(out, dict)
    orjson.dumps(out)  # storable as it is
    assert kind.validate(out, limits=limits) == out


# -- a model's own limits ----------------------------------------------------------------------

NUMERIC = [
    (kind, name)
    for kind in CLOSED_KINDS
    for name, spec in SPECS[kind].items()
    if spec.numeric
    and spec.lo is not None
    and spec.hi is not None
    and name != "seed"
    and not (kind == "background_fix" and name.endswith("_threshold"))
    and not (kind == "image_adjust" and name in ("aspect_ratio", "target_width", "target_height"))
]


@pytest.mark.parametrize(("kind_name", "field"), NUMERIC)
@PER_FIELD
@given(data=st.data())
def test_a_models_limits_tighten_the_kinds_bounds_and_are_named(
    kind_name: str, field: str, data: st.DataObject
) -> None:
    spec = SPECS[kind_name][field]
    assert spec.lo is not None and spec.hi is not None
    values = valid_value(spec)
    low, high = sorted((data.draw(values, label="limit"), data.draw(values, label="limit")))
    limits = {f"min_{field}": float(low), f"max_{field}": float(high)}
    value = data.draw(values, label="value")
    raw = {**minimal(kind_name), field: value}

    if low <= value <= high:
        assert KINDS[kind_name].validate(raw, limits=limits)[field] == value
        return
    error = rejected(kind_name, raw, limits=limits)
    assert error.param == field and error.code == "out_of_range"
    bound = high if value > high else low
    shown = str(int(bound)) if float(bound).is_integer() else str(float(bound))
    assert shown in error.message


@pytest.mark.parametrize(("kind_name", "field"), NUMERIC)
@PER_FIELD
@given(data=st.data())
def test_a_models_limit_never_widens_the_kinds_bound(
    kind_name: str, field: str, data: st.DataObject
) -> None:
    spec = SPECS[kind_name][field]
    assert spec.hi is not None
    value = data.draw(out_of_bounds(spec).filter(lambda v: v > (spec.hi or 0)))
    limits = {f"max_{field}": float(value) * 2 + 1}

    error = rejected(kind_name, {**minimal(kind_name), field: value}, limits=limits)

    assert error.param == field
