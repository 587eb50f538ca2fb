"""The audit's streaming pass: one Exchange at a time into bounded state per template family.

Memory does not grow with the log: per family it keeps exact token vectors per price key, a handful of
counters and histograms, one example per finding and the previous request (for the prefix diff); the number
of families is capped (`max_families`; later templates share an "(other)" family) and so is the list of
malformed lines (`max_malformed`; all are counted). Partial auditors (one per worker over a split file) merge
exactly; `parity.audit.report.build_report` turns the result into the report.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import parity.audit.batch as batching
from parity.audit.cache import CacheFamily, shape_of
from parity.audit.cost import CostAcc, Pricer, UnpricedError, usage_counts
from parity.audit.rightsize import OutputStats, RightsizePolicy
from parity.exchange import Exchange, Rejected
from parity.fingerprint import family_label, fingerprint
from parity.pricing import min_cacheable_tokens
from parity.task import named_task
from parity.readers.common import BODIES_TAG

OTHER = "(other)"


@dataclass(frozen=True)
class AuditOptions:
    """Knobs of one audit; the defaults are what `parity audit` uses."""

    max_families: int = 2000
    max_malformed: int = 10_000
    top: int = 10
    night: batching.NightPolicy = field(default_factory=batching.NightPolicy)
    rightsize: RightsizePolicy = field(default_factory=RightsizePolicy)
    candidate_model: str | None = None
    recount: int = 0
    seed: int = 0


class Family:
    """Everything the audit keeps about one template family (bounded)."""

    __slots__ = ("id", "kind", "label", "first_line", "first_file", "slices", "slice_lines", "job_reasons",
                 "outputs", "cache", "last_day", "first_ts", "last_ts")

    def __init__(self, fid: str, kind: str, label: str, line: int, file: str) -> None:
        self.id, self.kind, self.label = fid, kind, label
        self.first_line, self.first_file = line, file
        self.slices: dict[str, CostAcc] = {}
        self.slice_lines: dict[str, list[tuple[int, str]]] = {}
        self.job_reasons: dict[str, int] = {}
        self.outputs = OutputStats()
        self.cache = CacheFamily()
        self.last_day: date | None = None
        self.first_ts = float("inf")
        self.last_ts = float("-inf")

    def merge(self, other: Family, policy: RightsizePolicy) -> None:
        for name, acc in other.slices.items():
            self.slices.setdefault(name, CostAcc()).merge(acc)
        for name, lines in other.slice_lines.items():
            mine = self.slice_lines.setdefault(name, [])
            mine.extend(lines[: max(0, 2 - len(mine))])
        for reason, n in other.job_reasons.items():
            self.job_reasons[reason] = self.job_reasons.get(reason, 0) + n
        self.outputs.merge(other.outputs, policy)
        self.cache.merge(other.cache)
        if other.last_day and (self.last_day is None or other.last_day > self.last_day):
            self.last_day = other.last_day
        self.first_ts = min(self.first_ts, other.first_ts)
        self.last_ts = max(self.last_ts, other.last_ts)

    def cost(self) -> CostAcc:
        return CostAcc.total(self.slices.values())



class Auditor:
    """Consumes `(source, line, Exchange | Rejected)` one at a time; `build_report(auditor)` makes the report."""

    def __init__(self, options: AuditOptions | None = None, *, pricer: Pricer | None = None) -> None:
        self.options = options or AuditOptions()
        self.pricer = pricer or Pricer()
        self.total = CostAcc()
        self.families: dict[str, Family] = {}
        self.malformed: list[tuple[str, int, str]] = []
        self.malformed_count = 0
        self.warnings: list[tuple[str, int, str]] = []
        self.warnings_count = 0
        self.errors = 0
        self.inputs: dict[str, list[int]] = {}  # source -> [last line, records]
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.sample: list[tuple[int, Exchange]] = []
        self.sample_seen = 0
        self._rng = random.Random(self.options.seed)
        self._min_tokens: dict[str, int] = {}

    # --- streaming -----------------------------------------------------------------------------------------

    def observe(self, source: str, line: int, item: Exchange | Rejected) -> None:
        seen = self.inputs.get(source)
        if seen is None:
            seen = self.inputs[source] = [0, 0]
        if line > seen[0]:
            seen[0] = line
        seen[1] += 1
        if not isinstance(item, Exchange):
            self._reject(item.file or source, item.line or line, item.reason)
            return
        response = item.response
        request = item.request
        if response is None:
            self.errors += 1  # an error response is not billed
            return
        model = response.get("model") or request.get("model")
        if not isinstance(model, str) or not model:
            self._reject(source, line, "no model: neither response.model nor request.model is a model id")
            return
        usage = response.get("usage")
        started_at = item.started_at
        try:
            counts = usage_counts(usage)
            key = self.pricer.key(model, usage, counts, batch=item.batch, at=started_at)
        except UnpricedError as exc:
            self._reject(source, line, str(exc))
            return
        if self.first is None or started_at < self.first:
            self.first = started_at
        if self.last is None or started_at > self.last:
            self.last = started_at

        family = self._family(request, item, line, source)
        slice_name, reason = batching.classify(item, started_at.hour)
        acc = family.slices.get(slice_name)
        if acc is None:
            acc = family.slices[slice_name] = CostAcc()
            family.slice_lines[slice_name] = []
        acc.add(key, 1, *counts)
        lines = family.slice_lines[slice_name]
        if len(lines) < 2:
            lines.append((line, source))
        if reason is not None:
            family.job_reasons[reason] = family.job_reasons.get(reason, 0) + 1
        if family.last_day is None or key.day > family.last_day:
            family.last_day = key.day
        ts = started_at.timestamp()
        if ts < family.first_ts:
            family.first_ts = ts
        if ts > family.last_ts:
            family.last_ts = ts
        if self.options.recount:
            self._sample(line, item)
        bodies = item.tags.get(BODIES_TAG) != "no"  # a cost-only source: sizes, never shapes or prefixes
        try:  # the record is priced; an odd shape must not stop the audit, nor un-price it
            family.outputs.observe(request, response, counts[4], self.options.rightsize, bodies=bodies)
            if not bodies:
                return
            minimum = self._min_tokens.get(model)
            if minimum is None:
                minimum = self._min_tokens[model] = _min_cacheable(model)
            duration = item.duration_ms / 1000.0
            ttft = min(duration, 1.0) if request.get("stream") is True else duration
            family.cache.observe(request, shape_of(request, model), counts, key, slice_name, ts, ttft, line, source,
                                 minimum)
        except Exception as exc:  # noqa: BLE001
            self.warnings_count += 1
            if len(self.warnings) < 100:
                self.warnings.append((source, line, f"priced, but not analysed for caching or output shape: "
                                                    f"{type(exc).__name__}: {exc}"))

    def _family(self, request: Mapping[str, Any], exchange: Exchange, line: int, source: str) -> Family:
        named = named_task(request, tags=exchange.tags)  # the one task rule: tag or metadata, as `serve` reads it
        task = named.name if named is not None else None
        if task:
            fid, kind = task, "tag"
        else:
            fid, kind = fingerprint(request), "fingerprint"
        family = self.families.get(fid)
        if family is None:
            if len(self.families) >= self.options.max_families:
                fid, kind = OTHER, "other"
                family = self.families.get(fid)
            if family is None:
                label = f"task: {task}" if kind == "tag" else ("templates beyond the family cap" if kind == "other"
                                                               else family_label(request))
                family = self.families[fid] = Family(fid, kind, label, line, source)
        return family

    def _reject(self, file: str, line: int, reason: str) -> None:
        self.malformed_count += 1
        limit = self.options.max_malformed
        if not limit or len(self.malformed) < limit:
            self.malformed.append((file, line, reason))

    def _sample(self, line: int, exchange: Exchange) -> None:
        self.sample_seen += 1
        if len(self.sample) < self.options.recount:
            self.sample.append((line, exchange))
        else:
            j = self._rng.randrange(self.sample_seen)
            if j < self.options.recount:
                self.sample[j] = (line, exchange)

    # --- merging partial audits (one per worker, in file order) -------------------------------------------

    def merge(self, other: Auditor) -> Auditor:
        for fid, fam in other.families.items():
            mine = self.families.get(fid)
            if mine is None:
                if len(self.families) >= self.options.max_families and fid != OTHER:
                    mine = self.families.get(OTHER)
                    if mine is None:
                        self.families[OTHER] = fam
                        fam.id, fam.kind, fam.label = OTHER, "other", "templates beyond the family cap"
                        continue
                else:
                    self.families[fid] = fam
                    continue
            mine.merge(fam, self.options.rightsize)
        for file, line, reason in other.malformed:
            self._reject(file, line, reason)
        self.malformed_count += other.malformed_count - len(other.malformed)
        self.warnings.extend(other.warnings[: max(0, 100 - len(self.warnings))])
        self.warnings_count += other.warnings_count
        self.errors += other.errors
        for source, (last, records) in other.inputs.items():
            seen = self.inputs.setdefault(source, [0, 0])
            seen[0] = max(seen[0], last)
            seen[1] += records
        for value in (other.first, other.last):
            if value is not None:
                self.first = value if self.first is None or value < self.first else self.first
                self.last = value if self.last is None or value > self.last else self.last
        if other.sample:
            pool = self.sample + other.sample
            self.sample_seen += other.sample_seen
            self.sample = sorted(self._rng.sample(pool, min(len(pool), self.options.recount)), key=lambda p: p[0])
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["pricer"] = None  # the parent has its own (the same table); rates are cheap to rebuild
        return state


def _min_cacheable(model: str) -> int:
    try:
        return min_cacheable_tokens(model)
    except Exception:  # a model priced by a user's file but not in the catalogue
        return 1024


__all__ = ["OTHER", "AuditOptions", "Auditor", "Family"]
