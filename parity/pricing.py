"""Exact cost of a Claude API usage object, from an effective-dated price table.

The prices are data (parity/data/prices.toml, rows with effective dates and sources); a team can add or
correct rows in its own TOML files (`--prices FILE`, or PARITY_PRICES=path1:path2). The rules that are not
per-model data live here, once:

* batch (Message Batches API, or usage.service_tier == "batch"): 50 % off every category, shown as a
  separate negative `batch_discount` line so the category lines keep their list price;
* inference_geo: the row's multiplier for that geo (``us`` x1.1 on Claude 4.6+), on every category;
* speed "fast": the row's fast input/output rates, cache rates derived from the fast input rate; never
  on batches;
* long_prompt: when input + cache reads + cache writes exceed the row's threshold, every token of the
  request, output included, is billed at the high band (Haiku 5.5 > 100k; Sonnet 4/4.5 > 200k, which
  was only reachable with the 1M-context beta, so the prompt size alone marks those requests);
* usage with cache_creation_input_tokens but no cache_creation split: all writes are 5-minute writes
  (the only TTL before 1-hour caching existed, and the default).

All arithmetic runs in a decimal context that traps inexact results, so a total is exact or an error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timezone
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from parity import catalog
from parity.catalog import UnknownModelError
from parity.errors import InputError, ParityError

__all__ = [
    "CATEGORIES",
    "CostBreakdown",
    "ModelPrice",
    "PriceError",
    "PriceTable",
    "Rates",
    "UnknownModelError",
    "cost",
    "default_table",
    "format_usd",
    "min_cacheable_tokens",
]

CATEGORIES = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
ENV_VAR = "PARITY_PRICES"
ZERO = Decimal(0)
_EXACT = Context(prec=120, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ROW_KEYS = {"model", "effective_from", "effective_to", "source", "note", "inference_geo", "fast", "long_prompt",
             *CATEGORIES}  # fmt: skip
_FAST_KEYS = {"input", "output", "cache_write_5m", "cache_write_1h", "cache_read"}
_PACKAGED = "parity/data/prices.toml"


class PriceError(ParityError, ValueError):
    """A usage object or a pricing option that cannot be priced as given."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens for each billed category."""

    input: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    output: Decimal

    def scaled(self, factor: Decimal) -> Rates:
        with localcontext(_EXACT):
            return Rates(*(getattr(self, c) * factor for c in CATEGORIES))


@dataclass(frozen=True)
class LongPrompt:
    """The high band: above `above_tokens` of prompt, the whole request is billed at `rates`."""

    above_tokens: int
    rates: Rates


@dataclass(frozen=True)
class ModelPrice:
    """One row of the price table: a model's rates over one period."""

    model: str
    effective_from: date
    effective_to: date | None
    source: str
    rates: Rates
    fast: Rates | None = None
    long_prompt: LongPrompt | None = None
    inference_geo: Mapping[str, Decimal] | None = None
    note: str | None = None
    origin: str = _PACKAGED

    def rates_for(self, *, prompt_tokens: int, speed: str | None = None, inference_geo: str | None = None) -> Rates:
        """Rates for one request: fast or long-prompt band (fast wins), then the geo multiplier."""
        if speed == "fast":
            if self.fast is None:
                raise PriceError(
                    f"{self.model} has no fast-mode price (speed 'fast'); if the API offers it, add "
                    f'fast = {{ input = "..", output = ".." }} to its row in a --prices file'
                )
            rates = self.fast
        elif self.long_prompt is not None and prompt_tokens > self.long_prompt.above_tokens:
            rates = self.long_prompt.rates
        else:
            rates = self.rates
        factor = (self.inference_geo or {}).get((inference_geo or "").lower())
        return rates.scaled(factor) if factor is not None else rates


@dataclass(frozen=True)
class CostBreakdown:
    """Exact USD cost of usage, itemised; category lines are list price, the batch discount is its own line."""

    model: str
    input: Decimal = ZERO
    cache_write_5m: Decimal = ZERO
    cache_write_1h: Decimal = ZERO
    cache_read: Decimal = ZERO
    output: Decimal = ZERO
    batch_discount: Decimal = ZERO  # <= 0

    MIXED = "mixed"  # model of a sum over several models

    @classmethod
    def zero(cls, model: str = "") -> CostBreakdown:
        return cls(model=model)

    @property
    def list_total(self) -> Decimal:
        """Sum of the category lines, before the batch discount."""
        with localcontext(_EXACT):
            return sum((getattr(self, c) for c in CATEGORIES), ZERO)

    @property
    def total(self) -> Decimal:
        with localcontext(_EXACT):
            return self.list_total + self.batch_discount

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        if not isinstance(other, CostBreakdown):
            return NotImplemented
        model = self.model if other.model in ("", self.model) else other.model if not self.model else self.MIXED
        with localcontext(_EXACT):
            amounts = {n: getattr(self, n) + getattr(other, n) for n in (*CATEGORIES, "batch_discount")}
        return CostBreakdown(model=model, **amounts)

    def __radd__(self, other: object) -> CostBreakdown:
        if other == 0:  # lets plain sum() work
            return self
        return NotImplemented  # type: ignore[return-value]

    def to_dict(self) -> dict[str, str]:
        """Model and amounts as plain decimal strings (no exponent), total included."""
        out = {"model": self.model}
        for f in fields(self):
            if f.name != "model":
                out[f.name] = _plain(getattr(self, f.name))
        out["total"] = _plain(self.total)
        return out


class PriceTable:
    """Price rows by canonical model id, each model's rows sorted by effective_from."""

    def __init__(self, rows: Mapping[str, Sequence[ModelPrice]]) -> None:
        self._rows = {model: tuple(sorted(rs, key=lambda r: r.effective_from)) for model, rs in rows.items()}

    @classmethod
    def load(cls, extra_files: Sequence[str | os.PathLike[str]] = ()) -> PriceTable:
        """The packaged table, then each extra file in order; a file's rows replace all earlier rows of its models."""
        text = resources.files("parity").joinpath("data/prices.toml").read_text(encoding="utf-8")
        rows = _parse_file(text, _PACKAGED)
        for path in extra_files:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(f"cannot read price file: {exc.strerror or exc}", file=str(path)) from exc
            rows.update(_parse_file(text, str(path)))
        return cls(rows)

    def models(self) -> list[str]:
        """Canonical ids that have a price."""
        return sorted(self._rows)

    def rows(self, model: str) -> tuple[ModelPrice, ...]:
        """Every period of a model's price, oldest first."""
        return self._rows[self._key(model)]

    def price_for(self, model: str, at: date | datetime | None = None) -> ModelPrice:
        """The row in force on `at` (default: today, UTC). Before a model's first row, its first row applies."""
        day = _as_date(at)
        rows = self.rows(model)
        chosen = rows[0]
        for row in rows:
            if row.effective_from <= day:
                chosen = row
        if chosen.effective_to is not None and chosen.effective_from <= day and day >= chosen.effective_to:
            raise UnknownModelError(
                model,
                hint=f"Its last price row ({chosen.origin}) ended on {chosen.effective_to}, so nothing prices {day}. "
                + _how_to_add(self._key(model), day),
            )
        return chosen

    def _key(self, model: str) -> str:
        if model in self._rows:
            return model
        try:
            canonical = catalog.resolve(model)
        except UnknownModelError:
            canonical = None
        if canonical in self._rows:
            return canonical
        hint = "Parity has no price for it. " + _how_to_add(model, _as_date(None))
        raise UnknownModelError(model, known=self._rows, hint=hint)


def default_table() -> PriceTable:
    """The packaged table plus the files named in PARITY_PRICES (os.pathsep-separated), loaded once per value."""
    value = os.environ.get(ENV_VAR, "")
    return _cached_table(tuple(p for p in value.split(os.pathsep) if p))


@cache
def _cached_table(paths: tuple[str, ...]) -> PriceTable:
    return PriceTable.load(paths)


def min_cacheable_tokens(model: str) -> int:
    """Shortest prefix the model caches; shorter prompts are silently not cached (claude-api.md §6.7)."""
    return catalog.get_model(model).min_cacheable_tokens


def cost(
    model: str,
    usage: Mapping[str, Any],
    *,
    batch: bool = False,
    inference_geo: str | None = None,
    speed: str | None = None,
    at: date | datetime | None = None,
    table: PriceTable | None = None,
) -> CostBreakdown:
    """Exact cost of one response's usage. Options left as None are read from the usage object itself."""
    counts = _counts(usage)
    batch = batch or usage.get("service_tier") == "batch"
    geo = inference_geo if inference_geo is not None else usage.get("inference_geo")
    speed = speed if speed is not None else usage.get("speed")
    if speed not in (None, "standard", "fast"):
        raise PriceError(f"speed must be 'standard' or 'fast', got {speed!r}")
    if batch and speed == "fast":
        raise PriceError("fast mode (speed 'fast') is not available on the Message Batches API; price it as one"
                         " or the other")
    price = (table or default_table()).price_for(model, at)
    prompt = counts["input"] + counts["cache_read"] + counts["cache_write_5m"] + counts["cache_write_1h"]
    rates = price.rates_for(prompt_tokens=prompt, speed=speed, inference_geo=geo)
    with localcontext(_EXACT):
        lines = {c: (counts[c] * getattr(rates, c)).scaleb(-6) for c in CATEGORIES}
        discount = ZERO - sum(lines.values(), ZERO) / 2 if batch else ZERO
    return CostBreakdown(model=price.model, batch_discount=discount, **lines)


def format_usd(amount: Decimal | str | int | None, places: int | None = None) -> str:
    """For display only: '$1,234.57' from one dollar up, micro-dollar precision ('$0.012565') below.

    The one money formatter for people (terminal, HTML, certificates). Amounts may come as Decimal or as the
    decimal strings of a JSON report; an unknown amount (None or "") reads "n/a"."""
    if amount is None or amount == "":
        return "n/a"
    if not isinstance(amount, Decimal):
        amount = Decimal(str(amount))
    if places is None:
        places = 2 if abs(amount) >= 1 else 6
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=Context(prec=120))
    text = f"{abs(rounded):,f}"
    if "." in text and places > 2:
        text = text.rstrip("0")
        text += "0" * max(0, 2 - len(text.split(".")[1]))
    return ("-$" if rounded < 0 else "$") + text


# --- usage -------------------------------------------------------------------------------------------


def _counts(usage: Mapping[str, Any]) -> dict[str, int]:
    if not isinstance(usage, Mapping):
        raise PriceError(f"usage must be a mapping (the API's usage object), got {type(usage).__name__}")

    def count(source: Mapping[str, Any], key: str, where: str) -> int:
        value = source.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PriceError(f"{where}{key} must be a non-negative integer, got {value!r}")
        return value

    created = count(usage, "cache_creation_input_tokens", "usage.")
    split = usage.get("cache_creation")
    if split is None:
        five, hour = created, 0
    elif isinstance(split, Mapping):
        five = count(split, "ephemeral_5m_input_tokens", "usage.cache_creation.")
        hour = count(split, "ephemeral_1h_input_tokens", "usage.cache_creation.")
        if usage.get("cache_creation_input_tokens") is not None and five + hour != created:
            raise PriceError(
                f"usage.cache_creation splits {five} 5m + {hour} 1h = {five + hour} tokens, "
                f"but usage.cache_creation_input_tokens is {created}; they must agree"
            )
    else:
        raise PriceError(f"usage.cache_creation must be an object, got {split!r}")
    return {
        "input": count(usage, "input_tokens", "usage."),
        "cache_write_5m": five,
        "cache_write_1h": hour,
        "cache_read": count(usage, "cache_read_input_tokens", "usage."),
        "output": count(usage, "output_tokens", "usage."),
    }


# --- price files -------------------------------------------------------------------------------------


def _parse_file(text: str, file: str) -> dict[str, list[ModelPrice]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=file) from exc
    extra = set(data) - {"price"}
    if extra:
        raise InputError(f"unexpected top-level key(s) {sorted(extra)}; a price file holds [[price]] tables", file=file)
    rows = data.get("price")
    if not isinstance(rows, list) or not rows:
        raise InputError("no [[price]] rows", file=file, field="price")
    by_model: dict[str, list[ModelPrice]] = {}
    for index, row in enumerate(rows):
        price = _parse_row(row, file, f"price[{index}]")
        by_model.setdefault(price.model, []).append(price)
    for model, periods in by_model.items():
        periods.sort(key=lambda r: r.effective_from)
        for earlier, later in zip(periods, periods[1:]):
            ends_late = earlier.effective_to is not None and earlier.effective_to > later.effective_from
            if earlier.effective_from == later.effective_from or ends_late:
                raise InputError(
                    f"rows for {model} overlap: one from {earlier.effective_from} to "
                    f"{earlier.effective_to or 'open end'}, one from {later.effective_from}",
                    file=file,
                    field="effective_from",
                )
    return by_model


def _parse_row(row: Any, file: str, where: str) -> ModelPrice:
    def bad(reason: str, key: str = "") -> InputError:
        return InputError(reason, file=file, field=f"{where}.{key}" if key else where)

    if not isinstance(row, dict):
        raise bad("each [[price]] entry must be a table")
    unknown = set(row) - _ROW_KEYS
    if unknown:
        raise bad(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_ROW_KEYS)}")
    model = row.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad("model must be a model id string, e.g. \"claude-opus-4-8\"", "model")
    try:
        model = catalog.resolve(model)  # a dated alias prices its canonical model
    except UnknownModelError:
        pass
    source = row.get("source")
    if not isinstance(source, str) or not source.strip():
        raise bad("source must say where the numbers come from (a URL or page name)", "source")
    note = row.get("note")
    if note is not None and not isinstance(note, str):
        raise bad("note must be a string", "note")
    start = _date(row.get("effective_from"), bad, "effective_from")
    end = _date(row["effective_to"], bad, "effective_to") if "effective_to" in row else None
    if end is not None and end <= start:
        raise bad(f"effective_to {end} must be after effective_from {start}", "effective_to")
    rates = _rates(row, bad, "")
    return ModelPrice(
        model=model,
        effective_from=start,
        effective_to=end,
        source=source,
        rates=rates,
        fast=_fast(row["fast"], rates, bad) if "fast" in row else None,
        long_prompt=_long_prompt(row["long_prompt"], bad) if "long_prompt" in row else None,
        inference_geo=_geo(row["inference_geo"], bad) if "inference_geo" in row else None,
        note=note,
        origin=file,
    )


def _rate(value: Any, bad: Any, key: str) -> Decimal:
    if isinstance(value, float):
        raise bad(f"write rates as strings so they stay exact, e.g. \"{value}\" instead of {value}", key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise bad(f"expected a USD-per-MTok rate such as \"3.75\", got {value!r}", key)
    try:
        rate = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise bad(f"{value!r} is not a decimal number", key) from None
    if not rate.is_finite() or rate < 0:
        raise bad(f"rate must be a finite number >= 0, got {value!r}", key)
    return rate


def _rates(table: Mapping[str, Any], bad: Any, prefix: str) -> Rates:
    missing = [c for c in CATEGORIES if c not in table]
    if missing:
        raise bad(f"missing rate(s) {missing}", prefix.rstrip(".") or missing[0])
    return Rates(*(_rate(table[c], bad, prefix + c) for c in CATEGORIES))


def _fast(table: Any, base: Rates, bad: Any) -> Rates:
    if not isinstance(table, dict) or not {"input", "output"} <= set(table) or set(table) - _FAST_KEYS:
        optional = sorted(_FAST_KEYS - {"input", "output"})
        raise bad(f"fast must be a table with input and output (optionally {optional})", "fast")
    given = {k: _rate(v, bad, f"fast.{k}") for k, v in table.items()}
    fast_in = given["input"]
    with localcontext(_EXACT):
        derived = {"cache_write_5m": fast_in * Decimal("1.25"), "cache_write_1h": fast_in * 2}
        if "cache_read" not in given:
            try:  # the row's own read/input ratio, applied to the fast input rate
                derived["cache_read"] = fast_in * base.cache_read / base.input
            except (Inexact, DivisionByZero, InvalidOperation):
                raise bad("cannot derive the fast cache_read rate exactly; give fast.cache_read", "fast") from None
    derived.update(given)
    return Rates(*(derived[c] for c in CATEGORIES))


def _long_prompt(table: Any, bad: Any) -> LongPrompt:
    if not isinstance(table, dict):
        raise bad("long_prompt must be a table", "long_prompt")
    extra = set(table) - {"above_tokens", *CATEGORIES}
    if extra:
        raise bad(f"unknown field(s) {sorted(extra)}", "long_prompt")
    above = table.get("above_tokens")
    if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
        raise bad(f"above_tokens must be a positive integer, got {above!r}", "long_prompt.above_tokens")
    return LongPrompt(above, _rates(table, bad, "long_prompt."))


def _geo(table: Any, bad: Any) -> dict[str, Decimal]:
    if not isinstance(table, dict):
        raise bad("inference_geo must be a table such as { us = \"1.1\" }", "inference_geo")
    return {str(geo).lower(): _rate(v, bad, f"inference_geo.{geo}") for geo, v in table.items()}


def _date(value: Any, bad: Any, key: str) -> date:
    if isinstance(value, datetime):
        raise bad(f"expected a date such as 2026-10-07, got a date-time {value.isoformat()}", key)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise bad(f"expected a date such as 2026-10-07, got {value!r}", key)


# --- helpers -----------------------------------------------------------------------------------------


def _as_date(at: date | datetime | None) -> date:
    if at is None:
        return datetime.now(timezone.utc).date()
    if isinstance(at, datetime):
        return (at.astimezone(timezone.utc) if at.tzinfo else at).date()
    return at


def _plain(amount: Decimal) -> str:
    return f"{amount.normalize(_EXACT):f}" if amount else "0"


def _how_to_add(model: str, day: date) -> str:
    return (
        "To price it, put a row like this in a TOML file and pass it with --prices FILE "
        f"(or set {ENV_VAR}=FILE; several files joined with '{os.pathsep}'):\n\n"
        "[[price]]\n"
        f'model = "{model}"\n'
        f"effective_from = {day.isoformat()}\n"
        'source = "where the numbers come from, e.g. https://platform.claude.com/docs/en/about-claude/pricing"\n'
        'input = "3"            # USD per million tokens, as strings\n'
        'cache_write_5m = "3.75"\n'
        'cache_write_1h = "6"\n'
        'cache_read = "0.30"\n'
        'output = "15"\n'
    )
