"""The model catalog: load and validate ``catalog.toml``; resolve a model id to its routes."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigError, UnknownModel
from gateway.inline_media import DEFAULT_MAX_INPUT_BYTES
from gateway.kinds import KINDS, Kind
from gateway.pricing import DEFAULT_CURRENCY, Price, PriceEntry, missing_estimate
from providers.base import RouteSpec
from providers.mapping import validate_route_mapping
from providers.options import ROUTE_TIMEOUT_OPTION, check_route_timeout, unknown_options

MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
#: the example images a catalog may ship beside it (the web catalog's cards show them)
EXAMPLE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}
MAX_EXAMPLE_BYTES = 2 * 1024 * 1024
#: how a job picks among its model's routes: ``in_order`` (the first is the primary, the
#: rest fallbacks, as listed) or ``cheapest`` (the routes are interchangeable: the cheapest
#: that can run now, by the job's estimated cost, then the fastest; gateway/scheduler/choice.py)
RouteChoice = Literal["in_order", "cheapest"]


class _ExampleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, min_length=1, max_length=400)
    image: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> _ExampleEntry:
        if (self.prompt is None) == (self.image is None):
            raise ValueError("give either 'prompt' (the sandbox renders it) or 'image' (a file)")
        return self


class _RouteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = Field(min_length=1)
    target: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    input_map: dict[str, str] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    price: PriceEntry | None = None


class _ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=MODEL_ID_PATTERN)
    kind: str
    description: str = ""
    jobs_only: bool = False
    created: int = Field(0, ge=0)
    owned_by: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    limits: dict[str, float] = Field(default_factory=dict)
    routes: list[_RouteEntry] = Field(min_length=1)
    route_choice: RouteChoice = "in_order"
    example: _ExampleEntry | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind '{value}' (known: {', '.join(sorted(KINDS))})")
        return value


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[_ModelEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class ModelExample:
    """What a model's card shows as its example output: an image file shipped beside the
    catalog, or a prompt the sandbox renders. Never a job's output: the catalog is public."""

    prompt: str | None = None
    image: Path | None = None

    @property
    def content_type(self) -> str:
        return EXAMPLE_TYPES[self.image.suffix.lower()] if self.image else "image/png"


@dataclass(frozen=True)
class CatalogModel:
    id: str
    kind: Kind
    description: str
    jobs_only: bool
    created: int
    owned_by: str
    defaults: dict[str, Any]
    limits: dict[str, float]
    routes: tuple[RouteSpec, ...]
    example: ModelExample | None = None
    route_choice: RouteChoice = "in_order"

    @property
    def interchangeable(self) -> bool:
        """Its routes are interchangeable: a job runs on the cheapest that can run now."""
        return self.route_choice == "cheapest"

    @property
    def lane(self) -> str:
        """The provider whose concurrency a job of this model is counted against."""
        return self.routes[0].provider

    def with_routes(self, routes: Sequence[RouteSpec]) -> CatalogModel:
        """This model run through other routes (a per-job override of the chain), tried in
        the order given: a chain composed for one job is an order, not a set to pick from."""
        if not routes:
            raise ValueError("a route chain needs at least one route")
        return dataclasses.replace(self, routes=tuple(routes), route_choice="in_order")

    def for_job(self, meta: dict[str, Any]) -> CatalogModel:
        """The model as a job runs it: with the job's own route chain, if it has one."""
        override = meta.get("routes")
        if not override:
            return self
        return self.with_routes([RouteSpec.from_dict(r) for r in override])

    def validate_input(
        self, raw: Any, param_prefix: str = "", *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    ) -> dict[str, Any]:
        return self.kind.validate(
            raw,
            defaults=self.defaults,
            limits=self.limits,
            param_prefix=param_prefix,
            max_input_bytes=max_input_bytes,
        )

    def parameters(self) -> dict[str, Any]:
        return self.kind.parameters(self.defaults, self.limits)


class Catalog:
    def __init__(
        self,
        models: Iterable[CatalogModel],
        source: str = "<memory>",
        prices: dict[str, Price] | None = None,
    ) -> None:
        self.models: dict[str, CatalogModel] = {m.id: m for m in models}
        self.source = source
        #: route name (``provider:target``) -> its price; a route not here is unpriced
        self.prices: dict[str, Price] = dict(prices or {})
        #: the one currency of every price (and of every budget)
        self.currency = next(iter(self.prices.values())).currency if prices else DEFAULT_CURRENCY

    def price_of(self, route: RouteSpec) -> Price | None:
        """The route's price; None when it is unpriced (a cost unknown, not 0)."""
        return self.prices.get(route.name)

    def configured(self, model_id: str, kind: str, setting: str, work: str) -> CatalogModel:
        """The model a setting names for ``work`` (e.g. "task type 'face_swap'"), which needs
        a model of ``kind``; a ``ConfigError`` naming the setting when there is none such."""
        model = self.models.get(model_id)
        if model is None:
            raise ConfigError(
                f"{setting}: {work} needs a model of kind {kind}; there is no model "
                f"'{model_id}' in the catalog."
            )
        if model.kind.name != kind:
            raise ConfigError(
                f"{setting}: {work} needs a model of kind {kind}; '{model.id}' is of kind "
                f"{model.kind.name}."
            )
        return model

    def first_of_kind(self, kind: str, *preferred: str) -> CatalogModel | None:
        """The first of ``preferred`` (ids) of ``kind`` in the catalog, else the catalog's
        first model of ``kind``; None without one."""
        listed = (self.models.get(model_id) for model_id in preferred)
        return next((m for m in (*listed, *self) if m is not None and m.kind.name == kind), None)

    def get(self, model_id: str) -> CatalogModel:
        try:
            return self.models[model_id]
        except (KeyError, TypeError):
            raise UnknownModel(str(model_id)) from None

    def __iter__(self) -> Any:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


def load_catalog(path: Path, known_providers: Iterable[str]) -> Catalog:
    """Read and validate a catalog file; every problem names the file, the model and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the catalog ({exc.strerror}).") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}.") from None
    return parse_catalog(
        raw,
        known_providers,
        source=str(path),
        mtime=int(path.stat().st_mtime),
        base_dir=path.parent,
    )


def parse_catalog(
    raw: dict[str, Any],
    known_providers: Iterable[str],
    *,
    source: str,
    mtime: int = 0,
    base_dir: Path | None = None,
) -> Catalog:
    """``base_dir``: where example images are looked up (the catalog file's directory)."""
    known = set(known_providers)
    try:
        parsed = _CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(source, raw, exc)) from None
    models: list[CatalogModel] = []
    seen: set[str] = set()
    prices: dict[str, Price] = {}
    for entry in parsed.models:
        where = f"{source}: model '{entry.id}'"
        if entry.id in seen:
            raise ConfigError(f"{where}: field 'id': the id is declared twice.")
        seen.add(entry.id)
        kind = KINDS[entry.kind]
        _check_fields(where, kind, entry)
        routes = []
        for i, r in enumerate(entry.routes):
            if r.provider not in known:
                raise ConfigError(
                    f"{where}: field 'routes[{i}].provider': unknown provider '{r.provider}' "
                    f"(known: {', '.join(sorted(known))})."
                )
            unknown, known_options = unknown_options(r.provider, r.options)
            if unknown:
                raise ConfigError(
                    f"{where}: field 'routes[{i}].options.{unknown[0]}': a {r.provider} route "
                    f"({r.target}) has no option '{unknown[0]}' (it takes: "
                    f"{', '.join(sorted(known_options))})."
                )
            timeout = r.options.get(ROUTE_TIMEOUT_OPTION)
            if timeout is not None and (problem_text := check_route_timeout(timeout)):
                raise ConfigError(
                    f"{where}: field 'routes[{i}].options.{ROUTE_TIMEOUT_OPTION}': {problem_text}."
                )
            spec = RouteSpec(r.provider, r.target, r.options, r.input_map, r.constants)
            fields = kind.input_model.model_fields
            open_kind = kind.input_model.model_config.get("extra") == "allow"  # fal_app
            problem = validate_route_mapping(spec, None if open_kind else fields)
            if problem is not None:
                raise ConfigError(f"{where}: field 'routes[{i}].{problem[0]}': {problem[1]}.")
            if r.price is not None:
                _add_price(prices, f"{where}: field 'routes[{i}].price", spec, r.price, fields)
            routes.append(spec)
        models.append(
            CatalogModel(
                id=entry.id,
                kind=kind,
                description=entry.description,
                jobs_only=entry.jobs_only,
                created=entry.created or mtime,
                owned_by=entry.owned_by or routes[0].provider,
                defaults=dict(entry.defaults),
                limits=dict(entry.limits),
                routes=tuple(routes),
                example=_example(where, entry, base_dir or Path.cwd()),
                route_choice=entry.route_choice,
            )
        )
    for model in models:
        if model.interchangeable:  # after every price is known: one is per target
            _check_interchangeable(f"{source}: model '{model.id}'", model.routes, prices)
    return Catalog(models, source, prices)


def _check_interchangeable(
    where: str, routes: Sequence[RouteSpec], prices: dict[str, Price]
) -> None:
    """``route_choice = "cheapest"`` picks among routes by price: it needs two routes or more,
    and a price on at least one (unpriced routes rank after priced ones)."""
    if len(routes) < 2:
        raise ConfigError(
            f"{where}: field 'route_choice': \"cheapest\" picks among a model's routes; this "
            "model has one route: list the interchangeable routes, or drop 'route_choice'."
        )
    if not any(route.name in prices for route in routes):
        raise ConfigError(
            f"{where}: field 'route_choice': \"cheapest\" picks the route by its price, and "
            "none of this model's routes has one: give them a 'price', or drop 'route_choice'."
        )


def _add_price(
    prices: dict[str, Price], where: str, route: RouteSpec, entry: PriceEntry, fields: Any
) -> None:
    """Record ``route``'s price: one currency for the whole catalog, one price per
    provider target (a provider charges for its target, whichever model runs it)."""
    problem = missing_estimate(entry, fields)
    if problem is not None:
        raise ConfigError(f"{where}.estimate': {problem}.")
    price = Price.from_entry(entry)
    first = next(iter(prices.values()), None)
    if first is not None and first.currency != price.currency:
        raise ConfigError(
            f"{where}.currency': every price in the catalog is in one currency; this one is "
            f"{price.currency}, an earlier one {first.currency}."
        )
    known = prices.get(route.name)
    if known is not None and known != price:
        raise ConfigError(
            f"{where}': the route {route.name} already has another price ({known.describe()}); "
            "a provider's target has one price: give it once, or the same everywhere."
        )
    prices[route.name] = price


def _example(where: str, entry: _ModelEntry, base_dir: Path) -> ModelExample | None:
    example = entry.example
    if example is None:
        return None
    if example.prompt is not None:
        if entry.routes[0].provider != "sandbox":
            raise ConfigError(
                f"{where}: field 'example.prompt': only a model whose first route is the "
                "sandbox has its example rendered from a prompt; ship an 'image' instead."
            )
        return ModelExample(prompt=example.prompt)
    path = (base_dir / str(example.image)).resolve()
    if path.suffix.lower() not in EXAMPLE_TYPES:
        raise ConfigError(
            f"{where}: field 'example.image': must be one of "
            f"{', '.join(sorted(EXAMPLE_TYPES))} (got '{example.image}')."
        )
    try:
        size = path.stat().st_size
    except OSError:
        raise ConfigError(
            f"{where}: field 'example.image': no file {path} (relative to the catalog)."
        ) from None
    if size > MAX_EXAMPLE_BYTES:
        raise ConfigError(
            f"{where}: field 'example.image': {path} is {size} bytes; at most "
            f"{MAX_EXAMPLE_BYTES} are served."
        )
    return ModelExample(image=path)


def _check_fields(where: str, kind: Kind, entry: _ModelEntry) -> None:
    fields = kind.input_model.model_fields
    for name in entry.defaults:
        if name not in fields:
            raise ConfigError(
                f"{where}: field 'defaults.{name}': the {kind.name} kind has no parameter "
                f"'{name}' (it has: {', '.join(fields)})."
            )
    numeric = kind.numeric_fields
    for key in entry.limits:
        rule, _, name = key.partition("_")
        if rule not in ("min", "max") or name not in numeric:
            raise ConfigError(
                f"{where}: field 'limits.{key}': expected min_<field> or max_<field> for one of "
                f"{', '.join(sorted(numeric))}."
            )
    for key, bound in entry.limits.items():
        rule, _, name = key.partition("_")
        # without a model default the kind's applies, and a job must not run beyond the limit
        value = entry.defaults.get(name, fields[name].default)
        if isinstance(value, int | float) and (
            (rule == "max" and value > bound) or (rule == "min" and value < bound)
        ):
            whose = "the default" if name in entry.defaults else f"the {kind.name} kind's default"
            raise ConfigError(
                f"{where}: field 'defaults.{name}': {whose} {value} is outside the "
                f"model's own limit {key} = {bound}."
            )
    if entry.defaults:
        try:
            kind.input_model.model_validate(entry.defaults)
        except ValidationError as exc:
            # a missing required parameter is fine here: every request supplies it
            for err in exc.errors(include_url=False):
                if err["type"] != "missing":
                    name = ".".join(str(p) for p in err["loc"])
                    raise ConfigError(f"{where}: field 'defaults.{name}': {err['msg']}.") from None


def _describe(source: str, raw: dict[str, Any], exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = list(err["loc"])
    model_name = ""
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        try:
            model_name = f" model '{raw['models'][loc[1]].get('id', f'#{loc[1] + 1}')}':"
        except (KeyError, IndexError, AttributeError, TypeError):
            model_name = f" model #{loc[1] + 1}:"
        loc = loc[2:]
    field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{source}:{model_name} field '{field or 'models'}': {msg}."
