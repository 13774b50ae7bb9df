"""What the pages show of a catalog model: its parameters, routes and providers, as plain data.

Built from the same objects as ``GET /v1/models`` (the catalog and the routes' availability),
so the public catalog pages need no key and say exactly what the API says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Catalog, CatalogModel
from gateway.scheduler.availability import Availability

#: parameter types a form field is made for; anything else is typed in as JSON
_SCALARS = frozenset({"integer", "number", "boolean", "string", "array"})


@dataclass(frozen=True)
class Param:
    """One input parameter of a model, from its JSON schema (model defaults and limits applied)."""

    name: str
    type: str
    required: bool
    default: Any
    nullable: bool
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] = ()
    #: holds an image (a URL or a list of them): the playground offers an upload too
    image: bool = False

    @classmethod
    def from_schema(
        cls, name: str, prop: dict[str, Any], required: bool, image: bool = False
    ) -> Param:
        kind = str(prop.get("type", "object"))
        return cls(
            name=name,
            type=kind if kind in _SCALARS else "json",
            required=required,
            default=prop.get("default"),
            nullable=bool(prop.get("nullable")),
            description=str(prop.get("description", "")),
            minimum=prop.get("minimum"),
            maximum=prop.get("maximum"),
            exclusive_minimum=prop.get("exclusiveMinimum"),
            min_length=prop.get("minLength", prop.get("minItems")),
            max_length=prop.get("maxLength", prop.get("maxItems")),
            enum=tuple(str(v) for v in prop.get("enum", ())),
            image=image,
        )

    @property
    def widget(self) -> str:
        """The form control: select, checkbox, number, textarea, lines or text."""
        if self.enum:
            return "select"
        if self.type == "boolean":
            return "checkbox"
        if self.type in ("integer", "number"):
            return "number"
        if self.type == "array":
            return "lines"
        if self.type == "json" or "prompt" in self.name:
            return "textarea"
        return "text"

    @property
    def step(self) -> str:
        return "1" if self.type == "integer" else "any"

    @property
    def shown_default(self) -> str:
        """The default as the catalog shows it ("" when there is none)."""
        if self.default is None or self.default == []:
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    @property
    def form_value(self) -> str:
        """The value a form field starts with: the default, if it is not a list."""
        return "" if isinstance(self.default, list) else self.shown_default

    @property
    def bounds(self) -> str:
        """The allowed range in words: "64 to 2048", "at most 4000 characters", "one of ..."."""
        lo = self.minimum
        hi = self.maximum
        if self.enum:
            return "one of " + ", ".join(self.enum)
        if lo is not None and hi is not None:
            return f"{_num(lo)} to {_num(hi)}"
        if self.exclusive_minimum is not None and hi is not None:
            return f"above {_num(self.exclusive_minimum)}, at most {_num(hi)}"
        if hi is not None:
            return f"at most {_num(hi)}"
        if lo is not None:
            return f"at least {_num(lo)}"
        unit = "items" if self.type == "array" else "characters"
        if self.max_length is not None:
            return f"at most {self.max_length} {unit}"
        return ""


@dataclass(frozen=True)
class ModelView:
    id: str
    kind: str
    kind_description: str
    description: str
    jobs_only: bool
    available: bool
    routes: tuple[dict[str, Any], ...]
    params: tuple[Param, ...]
    #: the card's example image (``/examples/{id}``), when the catalog gives one
    example_url: str | None = None
    #: the primary route's price in words, or "unpriced"
    price: str | None = None

    @property
    def sandbox(self) -> bool:
        """Every route is the sandbox: a stand-in for development, grouped apart."""
        return all(r["provider"] == "sandbox" for r in self.routes)

    @property
    def reason(self) -> str:
        """Why the model cannot run now ("" when it can): its first route's reason."""
        if self.available:
            return ""
        return next((str(r["reason"]) for r in self.routes if r.get("reason")), "")

    @property
    def prompted(self) -> bool:
        """Takes a prompt and needs nothing else: the side-by-side page can run it."""
        required = {p.name for p in self.params if p.required}
        return required == {"prompt"}

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r["provider"] for r in self.routes))

    @property
    def free_input(self) -> bool:
        """The kind takes whatever the provider takes (no declared parameters)."""
        return not self.params

    @property
    def search_text(self) -> str:
        return f"{self.id} {self.kind} {self.description}".lower()

    def matches(
        self, query: str = "", kind: str = "", provider: str = "", available: bool = False
    ) -> bool:
        words = query.lower().split()
        return (
            (not available or self.available)
            and (not kind or self.kind == kind)
            and (not provider or provider in self.providers)
            and all(w in self.search_text for w in words)
        )


class CatalogView:
    def __init__(self, catalog: Catalog, availability: Availability) -> None:
        self.catalog = catalog
        self.availability = availability

    def model(self, model_id: str) -> ModelView:
        """The model's view; ``UnknownModel`` when the catalog has no such id."""
        return self._view(self.catalog.get(model_id))

    def models(self) -> list[ModelView]:
        return [self._view(m) for m in self.catalog]

    def kinds(self) -> list[str]:
        return _unique(m.kind.name for m in self.catalog)

    def providers(self) -> list[str]:
        return _unique(r.provider for m in self.catalog for r in m.routes)

    def _view(self, model: CatalogModel) -> ModelView:
        routes = self.availability.routes(model)
        for shown, route in zip(routes, model.routes, strict=True):
            price = self.catalog.price_of(route)
            shown["price"] = "unpriced" if price is None else price.describe()
        schema = model.parameters()
        required = set(schema.get("required", []))
        images = set(model.kind.input_model.image_fields)
        params = tuple(
            Param.from_schema(name, prop, name in required, name in images)
            for name, prop in schema.get("properties", {}).items()
        )
        return ModelView(
            id=model.id,
            kind=model.kind.name,
            kind_description=model.kind.description,
            description=model.description,
            jobs_only=model.jobs_only,
            available=any(r["available"] for r in routes),
            routes=tuple(routes),
            params=params,
            example_url=f"/examples/{model.id}" if model.example else None,
            price=_price(self.catalog, model),
        )


def _price(catalog: Catalog, model: CatalogModel) -> str:
    """The primary route's price in words, or "unpriced" (never 0: the cost is unknown)."""
    price = catalog.price_of(model.routes[0])
    return "unpriced" if price is None else price.describe()


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else str(value)
