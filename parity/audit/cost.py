"""Exact cost for the audit: token vectors accumulated per price key, priced once at the end.

Pricing a million requests one `pricing.cost()` call at a time is the slow part of an audit, and cost is
linear in token counts within one price key (model, price row in force that day, batch or not,
inference_geo, speed, long-prompt band). So the audit adds each request's integer token counts into a
`CostAcc` under its `PriceKey` and prices every key once with the rates `PriceTable.price_for(...).rates_for(...)`
returns: the sum is exactly the sum of the per-request `pricing.cost()` totals (tested), and the same
vectors can be re-priced under the levers (cache moves tokens between categories, batch flips the key's
batch flag, right-size swaps its model) so that savings stack on the very slice they apply to.

The first request of every key is also priced with `pricing.cost()` itself and the two must agree, so a
rule added to pricing.py later cannot silently diverge from this accumulator.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from typing import Any, NamedTuple

from parity import pricing
from parity.pricing import CostBreakdown, PriceError, PriceTable, Rates, UnknownModelError

__all__ = [
    "CATEGORIES",
    "CostAcc",
    "PriceKey",
    "Pricer",
    "UnpricedError",
    "usage_counts",
    "usd",
]

# Order of a token vector after its request count: n, input, 5m writes, 1h writes, cache reads, output.
CATEGORIES = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
EXACT = Context(prec=120, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
ZERO = Decimal(0)
_MILLION = Decimal(1_000_000)


class UnpricedError(ValueError):
    """A record that cannot be priced: the reason goes into the report's `malformed` list."""


class PriceKey(NamedTuple):
    """Everything besides token counts that decides a request's price."""

    model: str  # canonical id (the price row's model)
    day: date
    batch: bool
    geo: str | None
    speed: str | None  # None (standard) or "fast"
    band: int  # long-prompt band: how many of the table's band thresholds the prompt exceeds


def usd(amount: Decimal) -> str:
    """A decimal string with no exponent and no trailing zeros: the JSON form of money."""
    if not amount:
        return "0"
    text = f"{amount.normalize(EXACT):f}"
    return text


def usage_counts(usage: Any) -> tuple[int, int, int, int, int]:
    """(input, 5m writes, 1h writes, cache reads, output) from an API usage object.

    Follows pricing.py's reading of usage (a missing split means 5-minute writes); for anything odd it
    defers to `pricing.cost()` so the error message is pricing's own.
    """
    if not isinstance(usage, Mapping):
        raise UnpricedError("response.usage is missing or not an object; the record cannot be priced")
    get = usage.get
    inp = get("input_tokens") or 0
    read = get("cache_read_input_tokens") or 0
    out = get("output_tokens") or 0
    created = get("cache_creation_input_tokens") or 0
    split = get("cache_creation")
    if split is None:
        w5, w1 = created, 0
    elif isinstance(split, Mapping):
        w5 = split.get("ephemeral_5m_input_tokens") or 0
        w1 = split.get("ephemeral_1h_input_tokens") or 0
    else:
        w5 = w1 = -1  # let pricing.cost name the problem
    if (type(inp) is int and type(read) is int and type(out) is int and type(created) is int and type(w5) is int
            and type(w1) is int and inp >= 0 and read >= 0 and out >= 0 and created >= 0 and w5 >= 0 and w1 >= 0
            and (split is None or not created or w5 + w1 == created)):
        return inp, w5, w1, read, out
    values = (inp, w5, w1, read, out, created)
    names = ("input_tokens", "cache_creation.ephemeral_5m_input_tokens", "cache_creation.ephemeral_1h_input_tokens",
             "cache_read_input_tokens", "output_tokens", "cache_creation_input_tokens")
    for name, value in zip(names, values):
        if not (type(value) is int and value >= 0):
            shown = split if name.startswith("cache_creation.") and not isinstance(split, Mapping) else value
            raise UnpricedError(f"usage.{name} must be a non-negative integer, got {shown!r}")
    raise UnpricedError(
        f"usage.cache_creation splits {w5} 5m + {w1} 1h = {w5 + w1} tokens, but "
        f"usage.cache_creation_input_tokens is {created}; they must agree"
    )


class CostAcc:
    """Token vectors [requests, input, 5m writes, 1h writes, reads, output] by PriceKey (or any hashable key).

    Deltas (what a lever changes) use the same type with a request count of 0 and signed token counts.
    """

    __slots__ = ("v",)

    def __init__(self) -> None:
        self.v: dict[Hashable, list[int]] = {}

    def add(self, key: Hashable, n: int, inp: int, w5: int, w1: int, read: int, out: int) -> None:
        vec = self.v.get(key)
        if vec is None:
            self.v[key] = [n, inp, w5, w1, read, out]
        else:
            vec[0] += n
            vec[1] += inp
            vec[2] += w5
            vec[3] += w1
            vec[4] += read
            vec[5] += out

    def merge(self, other: CostAcc) -> CostAcc:
        for key, vec in other.v.items():
            self.add(key, *vec)
        return self

    def __bool__(self) -> bool:
        return any(any(vec) for vec in self.v.values())

    @property
    def requests(self) -> int:
        return sum(vec[0] for vec in self.v.values())

    def tokens(self) -> dict[str, int]:
        """Token totals per category."""
        out = dict.fromkeys(CATEGORIES, 0)
        for vec in self.v.values():
            for i, name in enumerate(CATEGORIES, start=1):
                out[name] += vec[i]
        return out

    def mapped(self, fn: Callable[[Any], Any]) -> CostAcc:
        """The same vectors under new keys (e.g. batch flag set, model swapped)."""
        result = CostAcc()
        for key, vec in self.v.items():
            result.add(fn(key), *vec)
        return result

    def filtered(self, keep: Callable[[Any], bool]) -> CostAcc:
        result = CostAcc()
        for key, vec in self.v.items():
            if keep(key):
                result.add(key, *vec)
        return result

    @classmethod
    def total(cls, accs: Iterable[CostAcc]) -> CostAcc:
        result = cls()
        for acc in accs:
            result.merge(acc)
        return result


@dataclass
class _RateEntry:
    model: str
    rates: Rates


class Pricer:
    """Prices token vectors with the project's price table; caches the rates of every key it has seen."""

    def __init__(self, table: PriceTable | None = None) -> None:
        self.table = table or pricing.default_table()
        thresholds: set[int] = set()
        for model in self.table.models():
            for row in self.table.rows(model):
                if row.long_prompt is not None:
                    thresholds.add(row.long_prompt.above_tokens)
        self.thresholds = sorted(thresholds)
        self._first = self.thresholds[0] if self.thresholds else None
        self._rates: dict[tuple[str, date, str | None, str | None, int], _RateEntry] = {}
        self._bad: dict[tuple[str, date], str] = {}
        self._keys: dict[tuple[Any, ...], PriceKey] = {}

    # --- one request ------------------------------------------------------------------------------

    def key(
        self, model: str, usage: Mapping[str, Any], counts: tuple[int, int, int, int, int], *,
        batch: bool, at: datetime | date,
    ) -> PriceKey:
        """The PriceKey of one request, checked once per key against `pricing.cost()`; UnpricedError if none."""
        day = at.date() if isinstance(at, datetime) else at
        batch = batch or usage.get("service_tier") == "batch"
        geo = usage.get("inference_geo")
        speed = usage.get("speed")
        if not (geo is None or type(geo) is str) or not (speed is None or type(speed) is str):
            raise UnpricedError(f"usage.inference_geo and usage.speed must be strings, got {geo!r} and {speed!r}")
        prompt = counts[0] + counts[1] + counts[2] + counts[3]
        band = 0 if self._first is None or prompt <= self._first else bisect.bisect_left(self.thresholds, prompt)
        ident = (model, day, batch, geo, speed, band)
        key = self._keys.get(ident)
        if key is None:
            geo_n = geo.lower() if isinstance(geo, str) and geo else None
            speed_n = None if speed in (None, "standard") else speed
            entry = self._entry(model, day, geo_n, speed_n, band)
            key = PriceKey(entry.model, day, batch, geo_n, speed_n, band)
            self._check(model, usage, counts, key, at)  # the first request of every key, against pricing.cost
            self._keys[ident] = key
        return key

    def _entry(self, model: str, day: date, geo: str | None, speed: str | None, band: int) -> _RateEntry:
        ident = (model, day, geo, speed, band)
        entry = self._rates.get(ident)
        if entry is None:
            bad = self._bad.get((model, day))
            if bad is not None:
                raise UnpricedError(bad)
            try:
                row = self.table.price_for(model, day)
            except UnknownModelError as exc:
                reason = _short(f"unpriced model {model!r}: {exc}")
                self._bad[(model, day)] = reason
                raise UnpricedError(reason) from None
            try:
                rates = row.rates_for(prompt_tokens=self._band_tokens(band), speed=speed, inference_geo=geo)
            except PriceError as exc:
                raise UnpricedError(str(exc)) from None
            entry = self._rates[ident] = _RateEntry(row.model, rates)
        return entry

    def _band_tokens(self, band: int) -> int:
        """A prompt size inside band `band` (0: at or below the first threshold)."""
        return 0 if band == 0 else self.thresholds[band - 1] + 1

    def _check(self, model: str, usage: Mapping[str, Any], counts: tuple[int, ...], key: PriceKey,
               at: datetime | date) -> None:
        try:
            expected = pricing.cost(model, usage, batch=key.batch, at=at, table=self.table)
        except (PriceError, UnknownModelError) as exc:
            raise UnpricedError(_short(str(exc))) from None
        acc = CostAcc()
        acc.add(key, 1, *counts)
        got = self.breakdown(acc)
        if got.total != expected.total:
            raise AssertionError(
                f"audit pricing disagrees with pricing.cost for {model} {dict(usage)}: {got.total} != {expected.total}"
            )

    # --- vectors ----------------------------------------------------------------------------------

    def rates(self, key: PriceKey) -> Rates:
        return self._entry(key.model, key.day, key.geo, key.speed, key.band).rates

    def breakdown(self, acc: CostAcc, model: str | None = None) -> CostBreakdown:
        """Exact itemised cost of every vector in `acc` (keys must be PriceKeys)."""
        total = CostBreakdown.zero(model or "")
        for key, vec in acc.v.items():
            total = total + self._price(key, vec)
        return total

    def grouped(self, acc: CostAcc, group: Callable[[PriceKey], Hashable]) -> dict[Hashable, tuple[CostBreakdown, int]]:
        """Cost and request count per group of keys (by model, by day...)."""
        out: dict[Hashable, tuple[CostBreakdown, int]] = {}
        for key, vec in acc.v.items():
            g = group(key)
            prev, n = out.get(g, (CostBreakdown.zero(), 0))
            out[g] = (prev + self._price(key, vec), n + vec[0])
        return out

    def total(self, acc: CostAcc) -> Decimal:
        return self.breakdown(acc).total

    def _price(self, key: PriceKey, vec: list[int]) -> CostBreakdown:
        rates = self.rates(key)
        with localcontext(EXACT):
            lines = {c: vec[i + 1] * getattr(rates, c) / _MILLION for i, c in enumerate(CATEGORIES)}
            discount = ZERO - sum(lines.values(), ZERO) / 2 if key.batch else ZERO
        return CostBreakdown(model=key.model, batch_discount=discount, **lines)

    def can_price(self, model: str, day: date) -> bool:
        try:
            self._entry(model, day, None, None, 0)
        except UnpricedError:
            return False
        return True


def _short(message: str) -> str:
    """The first paragraph of a long error (pricing's hints carry a TOML example after a blank line)."""
    head = message.split("\n\n", 1)[0].strip()
    if "\n\n" in message:
        head += " (add a [[price]] row in a TOML file and pass it with --prices FILE)"
    return head
