"""Prices of routes, and what one attempt costs: estimated from the input, final from what
the provider reports.

A route's price is an ``amount`` of the catalog's currency per ``unit``:

- ``image``           each output image (the input's ``num_images`` at submit)
- ``megapixel``       each million output pixels (``width * height * num_images`` at submit)
- ``video_second``    each second of output video (the input's ``duration``)
- ``compute_second``  each second the provider reports it computed (Replicate's
                      ``metrics.predict_time``, fal's ``metrics.inference_time``); at submit,
                      the price's ``estimate`` seconds
- ``run``             a flat price per run

``estimate`` is how many units to assume at submit when the input does not tell (required for
``compute_second``, and for a unit the model's kind has no field for). A route without a
price is *unpriced*: its cost is unknown, never 0. Money is counted in integer millionths of
the currency (micros), so sums are exact.

A failed attempt costs what the provider bills for it: the compute seconds it reports (for a
``compute_second`` price), else nothing: it produced no image, second or run to pay for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

UNITS = ("image", "megapixel", "video_second", "compute_second", "run")
Unit = Literal["image", "megapixel", "video_second", "compute_second", "run"]
MICROS = 1_000_000
DEFAULT_CURRENCY = "USD"
#: the most one unit may cost: catches a misplaced decimal point, limits nobody
MAX_AMOUNT = 10_000


class PriceEntry(BaseModel):
    """A route's ``price = {...}`` in catalog.toml."""

    model_config = ConfigDict(extra="forbid")
    amount: float = Field(ge=0, le=MAX_AMOUNT)
    unit: Unit
    currency: str = Field(DEFAULT_CURRENCY, pattern=r"^[A-Z]{3}$")
    estimate: float | None = Field(None, gt=0, le=1_000_000)

    @field_validator("amount", "estimate")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


@dataclass(frozen=True)
class Price:
    amount: Decimal
    unit: str
    currency: str = DEFAULT_CURRENCY
    #: units assumed at submit when the input does not tell
    estimate: float | None = None

    @classmethod
    def from_entry(cls, entry: PriceEntry) -> Price:
        # through str: the TOML's 0.025 stays 0.025, not its binary neighbour
        return cls(Decimal(str(entry.amount)), entry.unit, entry.currency, entry.estimate)

    def cost(self, units: float) -> int:
        """The price of ``units``, in micros (rounded half up)."""
        exact = self.amount * Decimal(str(units)) * MICROS
        return int(exact.to_integral_value(rounding="ROUND_HALF_UP"))

    def describe(self) -> str:
        """``$0.025 per image`` / ``0.03 EUR per run``."""
        money = f"${self.amount.normalize():f}" if self.currency == "USD" else None
        money = money or f"{self.amount.normalize():f} {self.currency}"
        return f"{money} per {self.unit.replace('_', ' ')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "amount": float(self.amount),
            "unit": self.unit,
            "currency": self.currency,
            "estimate": self.estimate,
        }


def missing_estimate(price: PriceEntry, fields: Mapping[str, Any]) -> str | None:
    """Why ``price`` needs an ``estimate`` for a kind with these input ``fields`` (pydantic
    ``FieldInfo``s), or None. A unit the input cannot measure needs one."""
    if price.estimate is not None:
        return None

    def has_int(name: str) -> bool:
        info = fields.get(name)
        return info is not None and isinstance(getattr(info, "default", None), int)

    if price.unit == "compute_second":
        return "a compute_second price needs 'estimate' (seconds assumed at submit)"
    if price.unit == "megapixel" and not (has_int("width") and has_int("height")):
        return "this kind's input has no width and height: give 'estimate' (megapixels)"
    if price.unit == "video_second" and not has_int("duration"):
        return "this kind's input has no duration: give 'estimate' (seconds)"
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def estimate_units(price: Price, job_input: Mapping[str, Any]) -> float:
    """How many units a run of ``job_input`` is assumed to take, before it runs."""
    count = _int(job_input.get("num_images")) or 1
    if price.unit == "image":
        return float(count)
    if price.unit == "megapixel":
        width, height = _int(job_input.get("width")), _int(job_input.get("height"))
        if width and height:
            return width * height * count / 1e6
    if price.unit == "video_second":
        duration = _int(job_input.get("duration"))
        if duration:
            return float(duration)
    if price.unit == "run":
        return 1.0
    return float(price.estimate or 0.0)


def estimate(price: Price | None, job_input: Mapping[str, Any]) -> int | None:
    """The estimated cost of one run, in micros; None when unpriced."""
    return None if price is None else price.cost(estimate_units(price, job_input))


@dataclass(frozen=True)
class Report:
    """What the provider said about a finished attempt that prices read."""

    succeeded: bool
    #: the output files' (width, height), None where unknown
    sizes: Sequence[tuple[int | None, int | None]] = ()
    #: the compute seconds the provider reported (None: it did not say)
    compute_seconds: float | None = None


def final(price: Price | None, job_input: Mapping[str, Any], report: Report) -> int | None:
    """The cost of a finished attempt, in micros; None when unpriced."""
    if price is None:
        return None
    if price.unit == "compute_second" and report.compute_seconds is not None:
        return price.cost(max(0.0, report.compute_seconds))
    if not report.succeeded:
        return 0
    if price.unit == "image" and report.sizes:
        return price.cost(len(report.sizes))
    if price.unit == "megapixel" and report.sizes and all(w and h for w, h in report.sizes):
        return price.cost(sum((w or 0) * (h or 0) for w, h in report.sizes) / 1e6)
    return price.cost(estimate_units(price, job_input))


def money(micros: int) -> float:
    """Micros as a number of the currency (for JSON)."""
    return micros / MICROS


def to_micros(value: float) -> int:
    return int((Decimal(str(value)) * MICROS).to_integral_value(rounding="ROUND_HALF_UP"))
