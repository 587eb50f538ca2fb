"""The audit pipeline: one streaming pass over Exchanges, bounded state per family, a JSON report at the end.

Memory does not grow with the log: per family it keeps exact token vectors per price key, a handful of
counters and histograms, one example per finding and the previous request (for the prefix diff); the number
of families is capped (`max_families`; later templates share an "(other)" family) and so is the list of
malformed lines (`max_malformed`; all are counted). Large JSONL files are split at line boundaries and
audited by several processes whose partial results merge exactly (only the one pair of requests per family
that straddles a split is not diffed).

`audit_exchanges(items)` is the entry point for any reader yielding `(source, line, Exchange | Rejected)`;
`audit_paths(paths)` reads JSONL, OTLP JSON or a ledger URL itself.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from parity import pricing
from parity.audit import batch as batching
from parity.audit.cache import CacheFamily, shape_of, ttl_advice
from parity.audit.cost import EXACT, CostAcc, Pricer, UnpricedError, usage_counts, usd
from parity.fingerprint import family_label, fingerprint
from parity.audit.findings import SCHEMA_ID, Finding
from parity.audit.rightsize import BIG_LINES, OutputStats, RightsizePolicy, candidate_model, model_line, shape_reasons
from parity.audit.rightsize import FIX as RIGHTSIZE_FIX
from parity.audit.savings import Slice, stack
from parity.errors import InputError
from parity.exchange import Exchange, Rejected, parse_time
from parity.task import named_task

import orjson

_loads: Callable[[bytes], Any] = orjson.loads  # a dependency: several times faster than json on big logs
_DecodeError: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)

__all__ = ["AuditOptions", "AuditReport", "Auditor", "audit_exchanges", "audit_paths", "detect_format"]

OTHER = "(other)"
_RATIO = Context(prec=28)  # for shares and percentages only; money stays exact
Progress = Callable[[int, int], None]  # (done, total) in bytes (or records when the size is unknown)


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


class _Family:
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

    def merge(self, other: _Family, policy: RightsizePolicy) -> None:
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
    """Consumes `(source, line, Exchange | Rejected)` one at a time; `report()` builds the AuditReport."""

    def __init__(self, options: AuditOptions | None = None, *, pricer: Pricer | None = None) -> None:
        self.options = options or AuditOptions()
        self.pricer = pricer or Pricer()
        self.total = CostAcc()
        self.families: dict[str, _Family] = {}
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
        try:  # the record is priced; an odd shape must not stop the audit, nor un-price it
            family.outputs.observe(request, response, counts[4], self.options.rightsize)
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

    def _family(self, request: Mapping[str, Any], exchange: Exchange, line: int, source: str) -> _Family:
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
                family = self.families[fid] = _Family(fid, kind, label, line, source)
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

    # --- the report ----------------------------------------------------------------------------------------

    def report(self, *, counter: Any = None) -> AuditReport:
        self.total = CostAcc.total(f.cost() for f in self.families.values())
        return _build_report(self, counter)


@dataclass
class AuditReport:
    """The audit's result: `data` is the JSON document (schema docs/audit-json.md)."""

    data: dict[str, Any]
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return self.data

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @property
    def total_cost(self) -> Decimal:
        return Decimal(self.data["totals"]["cost_usd"])


def audit_exchanges(
    items: Iterable[tuple[str, int, Exchange | Rejected] | Exchange],
    *,
    options: AuditOptions | None = None,
    table: pricing.PriceTable | None = None,
    counter: Any = None,
    source: str = "exchanges",
) -> AuditReport:
    """Audit records from any reader in one pass.

    Items are `(source, line, Exchange | Rejected)` as readers yield them, or bare Exchanges (a recorded list,
    e.g. the demo's): those are numbered 1, 2, ... in order and reported as lines of `source`.
    """
    auditor = Auditor(options, pricer=Pricer(table))
    for n, entry in enumerate(items, 1):
        if isinstance(entry, (Exchange, Rejected)):
            auditor.observe(source, n, entry)
        else:
            auditor.observe(*entry)
    return auditor.report(counter=counter)


# --- reading inputs ---------------------------------------------------------------------------------------------


def detect_format(path: str) -> str:
    """'ledger' for a database URL, 'otlp' for OTLP JSON, else 'jsonl' (Exchange JSONL)."""
    if "://" in path:
        return "ledger"
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    if b"resourceSpans" in head or b"resource_spans" in head:
        return "otlp"
    return "jsonl"


def audit_paths(
    paths: Iterable[str],
    *,
    fmt: str = "auto",
    options: AuditOptions | None = None,
    table: pricing.PriceTable | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    counter: Any = None,
) -> AuditReport:
    """Audit files (JSONL, OTLP JSON) or ledger URLs; large JSONL files are split across `workers` processes."""
    options = options or AuditOptions()
    pricer = Pricer(table)
    auditor = Auditor(options, pricer=pricer)
    paths = list(paths)
    sizes = {p: (os.path.getsize(p) if "://" not in p and os.path.exists(p) else 0) for p in paths}
    total = sum(sizes.values())
    done_before = 0
    for path in paths:
        kind = detect_format(path) if fmt == "auto" else fmt
        if kind == "jsonl":
            if not os.path.exists(path):
                raise InputError("no such file", file=path)
            n = workers if workers is not None else _default_workers(sizes[path])
            if n > 1:
                partial = _parallel_jsonl(path, n, options, pricer, lambda d, base=done_before: progress and progress(
                    base + d, total))
                auditor.merge(partial)
            else:
                for line, item, pos in _iter_jsonl(path, 0, None, 1):
                    auditor.observe(path, line, item)
                    if progress and line % 2000 == 0:
                        progress(done_before + pos, total)
        elif kind == "otlp":
            from parity.readers.otel import read_otlp

            for line, item in read_otlp(path):
                auditor.observe(path, line, item)
        elif kind == "ledger":
            from parity.ledger.reader import read_ledger

            for row, item in read_ledger(path):
                auditor.observe(path, row, item)
        else:
            raise InputError(f"unknown input format {kind!r}; use auto, jsonl, otlp or ledger", field="format")
        done_before += sizes[path]
        if progress:
            progress(done_before, total)
    auditor.pricer = pricer
    return auditor.report(counter=counter)


def _default_workers(size: int) -> int:
    if size < 64 * 1024 * 1024:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _iter_jsonl(path: str, start: int, end: int | None, first_line: int
                ) -> Iterator[tuple[int, Exchange | Rejected, int]]:
    """(line, Exchange | Rejected, bytes read) for the lines starting in [start, end); never stops on bad input.

    The same reading as `parity.exchange.read_jsonl` (same reasons), with orjson and a byte range
    so that several processes can share one file.
    """
    name = str(path)
    with open(path, "rb") as handle:
        handle.seek(start)
        pos = start
        number = first_line - 1
        for raw in handle:
            if end is not None and pos >= end:
                break
            pos += len(raw)
            number += 1
            if len(raw) < 8 and not raw.strip():
                continue
            try:
                data = _loads(raw)
            except _DecodeError as exc:
                yield number, Rejected(name, number, f"not valid JSON ({exc})"), pos - start
                continue
            try:
                yield number, _exchange(data, name, number), pos - start
            except InputError as exc:
                reason = exc.reason if exc.field is None else f"field {exc.field!r}: {exc.reason}"
                yield number, Rejected(name, number, reason), pos - start


def _exchange(data: Any, name: str, number: int) -> Exchange:
    """`Exchange.from_dict`, with a shortcut for the well-formed record (the common case on a big log).

    The shortcut accepts exactly what from_dict accepts and builds the same Exchange; anything unusual goes to
    from_dict, which also words the rejection.
    """
    if type(data) is dict:
        get = data.get
        request, response, error = get("request"), get("response"), get("error")
        started, duration, tags, route = get("started_at"), get("duration_ms", 0), get("tags"), get("route")
        if (type(request) is dict and type(started) is str and type(duration) is int and duration >= 0
                and (type(response) is dict or (response is None and type(error) is dict))
                and (error is None or type(error) is dict) and (route is None or type(route) is str)
                and (tags is None or (type(tags) is dict
                                      and all(type(k) is str and type(v) is str for k, v in tags.items())))):
            try:
                started_at = parse_time(started)
            except ValueError:
                pass
            else:
                return Exchange(request, response, error, started_at, duration, dict(tags) if tags else {}, route,
                                bool(get("batch", False)))
    return Exchange.from_dict(data, file=name, line=number)


def _split(path: str, n: int) -> list[tuple[int, int]]:
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as handle:
        for k in range(1, n):
            handle.seek(max(cuts[-1], size * k // n))
            handle.readline()  # to the start of the next line
            cuts.append(min(size, handle.tell()))
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _count_lines(path: str, start: int, end: int) -> int:
    count = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            block = handle.read(min(left, 16 * 1024 * 1024))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
    return count


def _worker(path: str, k: int, start: int, end: int, options: AuditOptions, counts: Any, ready: list[Any],
            done: Any, out: Any) -> None:
    try:
        counts[k] = _count_lines(path, start, end)
        ready[k].set()
        for event in ready[:k]:
            event.wait()
        first_line = 1 + sum(counts[i] for i in range(k))
        auditor = Auditor(options, pricer=Pricer(_TABLE[0]))
        for line, item, pos in _iter_jsonl(path, start, end, first_line):
            auditor.observe(path, line, item)
            if line % 2000 == 0:
                done[k] = pos
        done[k] = end - start
        out.put((k, auditor, None))
    except BaseException as exc:  # noqa: BLE001 - report it to the parent rather than hang it
        out.put((k, None, f"{type(exc).__name__}: {exc}"))


_TABLE: list[Any] = [None]


def _parallel_jsonl(path: str, n: int, options: AuditOptions, pricer: Pricer, progress: Callable[[int], Any]
                    ) -> Auditor:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    ranges = _split(path, n)
    counts = ctx.Array("q", len(ranges), lock=False)
    done = ctx.Array("q", len(ranges), lock=False)
    ready = [ctx.Event() for _ in ranges]
    out = ctx.Queue()
    _TABLE[0] = pricer.table
    procs = [ctx.Process(target=_worker, args=(path, k, a, b, options, counts, ready, done, out), daemon=True)
             for k, (a, b) in enumerate(ranges)]
    for proc in procs:
        proc.start()
    results: dict[int, Auditor] = {}
    try:
        while len(results) < len(procs):
            try:
                k, auditor, error = out.get(timeout=0.25)
            except Exception:  # queue.Empty
                progress(sum(done))
                dead = [p for i, p in enumerate(procs) if i not in results and not p.is_alive() and p.exitcode]
                if dead:
                    raise RuntimeError(f"an audit worker died (exit code {dead[0].exitcode})") from None
                continue
            if error is not None:
                raise RuntimeError(f"audit worker {k} failed: {error}")
            results[k] = auditor
            progress(sum(done))
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    merged = results[0]
    merged.pricer = pricer
    for k in range(1, len(ranges)):
        merged.merge(results[k])
    return merged


def _min_cacheable(model: str) -> int:
    try:
        return pricing.min_cacheable_tokens(model)
    except Exception:  # a model priced by a user's file but not in the catalogue
        return 1024


# --- building the report -----------------------------------------------------------------------------------------

_TOKENS_ZERO = {"input": 0, "cache_write_5m": 0, "cache_write_1h": 0, "cache_read": 0, "output": 0}
_BATCH_CAUSE = {"tag": "job_tag", "user_agent": "job_user_agent", "metadata": "job_metadata",
                "night_burst": "night_burst", "job": "job_tag"}


def _row(pricer: Pricer, acc: CostAcc) -> dict[str, Any]:
    breakdown = pricer.breakdown(acc)
    data = breakdown.to_dict()
    data.pop("model", None)
    return {"requests": acc.requests, "cost_usd": usd(breakdown.total), "breakdown": data, "tokens": acc.tokens()}


def _build_report(auditor: Auditor, counter: Any) -> AuditReport:
    from decimal import localcontext

    with localcontext(EXACT):
        return _build(auditor, counter)


def _build(auditor: Auditor, counter: Any) -> AuditReport:
    pricer, options = auditor.pricer, auditor.options
    total = pricer.breakdown(auditor.total)
    total_cost = total.total
    input_side, output_side = CostAcc(), CostAcc()
    for key, vec in auditor.total.v.items():
        input_side.add(key, vec[0], vec[1], vec[2], vec[3], vec[4], 0)
        output_side.add(key, 0, 0, 0, 0, 0, vec[5])
    input_cost = pricer.total(input_side)
    output_cost = pricer.total(output_side)
    findings: list[Finding] = []

    by_model = []
    for model, (breakdown, n) in sorted(pricer.grouped(auditor.total, lambda k: k.model).items(),
                                        key=lambda kv: -kv[1][0].total):
        acc = auditor.total.filtered(lambda k, m=model: k.model == m)
        by_model.append({"model": model, **_row(pricer, acc)})
    by_day = []
    for day in sorted({k.day for k in auditor.total.v}):
        acc = auditor.total.filtered(lambda k, d=day: k.day == d)
        by_day.append({"day": day.isoformat(), **_row(pricer, acc)})

    families = sorted(auditor.families.values(), key=lambda f: -pricer.total(f.cost()))
    by_family, cache_rows, batch_rows, rightsize_rows = [], [], [], []
    slices_for_stack: list[Slice] = []
    batch_now = batch_after = Decimal(0)
    for fam in families:
        acc = fam.cost()
        row = _row(pricer, acc)
        fam_cost = Decimal(row["cost_usd"])
        models = {}
        for key, vec in acc.v.items():
            models[key.model] = models.get(key.model, 0) + vec[0]
        by_family.append({"family": fam.id, "kind": fam.kind, "label": fam.label, "models": models,
                          "example_line": fam.first_line, "example_file": fam.first_file,
                          "output_share": _share(row["breakdown"]["output"], row["cost_usd"]), **row})

        cache_findings, cache_buckets, cache_row = _cache_family(pricer, fam, acc, fam_cost)
        findings.extend(cache_findings)
        cache_rows.append(cache_row)

        requests_by_slice = {name: a.requests for name, a in fam.slices.items()}
        span_hours = max(0.0, fam.last_ts - fam.first_ts) / 3600
        batchable = batching.batchable_slices(requests_by_slice, options.night, span_hours)
        if batchable:
            b_acc = CostAcc.total(fam.slices[s] for s in batchable)
            now = pricer.total(b_acc)
            after = pricer.total(b_acc.mapped(lambda k: k._replace(batch=True)))
            batch_now += now
            batch_after += after
            reasons = dict(fam.job_reasons)
            night = sum(fam.slices[s].requests for s, r in batchable.items() if r == "night_burst")
            if night:
                reasons["night_burst"] = night
            main = max(reasons, key=lambda r: reasons[r]) if reasons else "job"
            lines = [ln for s in batchable for ln in fam.slice_lines.get(s, [])][:2]
            finding = Finding(
                lever="batch", family=fam.id, label=fam.label, cause=_BATCH_CAUSE.get(main, main),
                fix=batching.FIX, requests=b_acc.requests, cost_usd=now, saving_usd=now - after,
                example_lines=[ln for ln, _ in lines], example_files=[f for _, f in lines],
                detail={"reasons": reasons, "cost_batched_usd": usd(after)},
            )
            findings.append(finding)
            batch_rows.append({"family": fam.id, "label": fam.label, "requests": b_acc.requests,
                               "reasons": reasons, "cost_now_usd": usd(now), "cost_batched_usd": usd(after),
                               "saving_usd": usd(now - after)})

        candidate = None
        main_model = max(models, key=lambda m: models[m]) if models else None
        reasons_rs = shape_reasons(fam.outputs, options.rightsize)
        line = model_line(main_model) if main_model else None
        if reasons_rs and line in BIG_LINES and fam.last_day is not None:
            candidate = candidate_model(pricer, fam.last_day, options.candidate_model)
            if candidate and candidate != main_model:
                to = lambda k, c=candidate: k if k.speed == "fast" else k._replace(model=c)  # noqa: E731
                at_candidate = pricer.total(acc.mapped(to))
                saving = fam_cost - at_candidate
                if saving > 0:
                    findings.append(Finding(
                        lever="rightsize", family=fam.id, label=fam.label, cause=_rightsize_cause(reasons_rs),
                        fix=RIGHTSIZE_FIX.format(family=fam.id, candidate=candidate), requests=acc.requests,
                        cost_usd=fam_cost, saving_usd=saving, hypothesis=True,
                        example_lines=[fam.first_line], example_files=[fam.first_file],
                        detail={"model": main_model, "candidate_model": candidate, "reasons": reasons_rs,
                                "cost_if_proven_usd": usd(at_candidate), "outputs": fam.outputs.to_dict()},
                    ))
                    rightsize_rows.append({"family": fam.id, "label": fam.label, "model": main_model,
                                           "candidate_model": candidate, "reasons": reasons_rs,
                                           "requests": acc.requests, "cost_usd": usd(fam_cost),
                                           "cost_if_proven_usd": usd(at_candidate), "saving_if_proven_usd": usd(saving),
                                           "status": "hypothesis: run parity prove"})
                else:
                    candidate = None
            else:
                candidate = None

        for name, slice_acc in fam.slices.items():
            delta = CostAcc()
            for bucket in cache_buckets:
                part = fam.cache.deltas.get((bucket, name))
                if part is not None:
                    delta.merge(part)
            slices_for_stack.append(Slice(slice_acc, delta, name in batchable, candidate))

    top_templates = [
        {"family": f["family"], "label": f["label"], "requests": f["requests"], "cost_usd": f["cost_usd"],
         "share": _share(f["cost_usd"], usd(total_cost)), "output_share": f["output_share"]}
        for f in by_family[: options.top]
    ]
    for t in top_templates[:5]:
        if Decimal(t["cost_usd"]) <= 0:
            continue
        heavy = t["output_share"] >= 0.5
        findings.append(Finding(
            lever="cost", family=t["family"], label=t["label"], cause="top_spend", requests=t["requests"],
            cost_usd=Decimal(t["cost_usd"]),
            fix=(f"{t['share']:.0%} of all spend; output is {t['output_share']:.0%} of it" + (
                 ": output dominates, so shorter answers (a lower max_tokens, a terser format) or a smaller model "
                 "matter most here" if heavy else
                 ": input dominates, so caching its stable prefix and trimming the prompt matter most here")),
            example_lines=[next(f["example_line"] for f in by_family if f["family"] == t["family"])],
            example_files=[next(f["example_file"] for f in by_family if f["family"] == t["family"])],
            detail={"share": t["share"], "output_share": t["output_share"]},
        ))

    tokens_section = _tokens_section(auditor, counter, findings)
    savings = stack(pricer, slices_for_stack)
    lever_order = {"cost": 0, "cache": 1, "batch": 2, "rightsize": 3, "tokens": 4}
    findings.sort(key=lambda f: (lever_order[f.lever], -f.saving_usd, -f.cost_usd))
    data: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "inputs": [{"file": s, "lines": v[0], "records": v[1]} for s, v in auditor.inputs.items()],
        "period": {"first": _iso(auditor.first), "last": _iso(auditor.last)},
        "totals": {
            "requests": auditor.total.requests,
            "cost_usd": usd(total_cost),
            "input_cost_usd": usd(input_cost),
            "output_cost_usd": usd(output_cost),
            "output_share": _share(usd(output_cost), usd(total_cost)),
            "breakdown": {k: v for k, v in total.to_dict().items() if k != "model"},
            "tokens": auditor.total.tokens() if auditor.total.v else dict(_TOKENS_ZERO),
            "errors": auditor.errors,
            "malformed": auditor.malformed_count,
        },
        "malformed": [{"file": f, "line": ln, "reason": r} for f, ln, r in auditor.malformed],
        "malformed_listed_max": options.max_malformed,
        "warnings": [{"file": f, "line": ln, "reason": r} for f, ln, r in auditor.warnings],
        "warnings_total": auditor.warnings_count,
        "by_model": by_model,
        "by_family": by_family,
        "by_day": by_day,
        "top_templates": top_templates,
        "cache": {"families": cache_rows},
        "batch": {"families": batch_rows, "cost_now_usd": usd(batch_now), "cost_batched_usd": usd(batch_after),
                  "saving_usd": usd(batch_now - batch_after),
                  "night_hours_utc": list(options.night.hours())},
        "rightsize": {"candidates": rightsize_rows,
                      "status": "hypothesis: each saving holds only if `parity prove` shows the cheaper model is "
                                "at least as good on this task"},
        "tokens": tokens_section,
        "findings": [f.to_dict() for f in findings],
        "savings": savings.to_dict(),
    }
    return AuditReport(data, findings)


def _cache_family(pricer: Pricer, fam: _Family, acc: CostAcc, fam_cost: Decimal
                  ) -> tuple[list[Finding], list[str], dict[str, Any]]:
    """Cache findings of one family, the delta buckets they contribute to the savings, and its table row."""
    c = fam.cache
    tokens = acc.tokens()
    read, written = tokens["cache_read"], tokens["cache_write_5m"] + tokens["cache_write_1h"]
    uncached = tokens["input"]
    prompt = read + written + uncached
    findings: list[Finding] = []
    buckets: list[str] = []

    def bucket_saving(bucket: str) -> tuple[Decimal, int]:
        delta = CostAcc.total(a for (b, _), a in c.deltas.items() if b == bucket)
        return -pricer.total(delta), sum(v[4] for v in delta.v.values() if v[4] > 0)

    missed = 0
    for cause, stats in sorted(c.causes.items(), key=lambda kv: -kv[1].requests):
        saving, moved = bucket_saving(cause)
        if saving > 0:
            buckets.append(cause)
            missed += moved
        detail = {"invalidated_from": stats.invalidated_from, "example": stats.example.strip()}
        if cause != "no_breakpoint" and c.bp_requests == 0:
            detail["note"] = "this family has no cache breakpoint either; the saving is under no_breakpoint"
        findings.append(Finding(
            lever="cache", family=fam.id, label=fam.label, cause=cause, block_path=stats.block_path,
            offset=stats.offset, example_lines=list(stats.lines), example_files=list(stats.files),
            requests=stats.requests, cost_usd=pricer.total(stats.cost), saving_usd=max(saving, Decimal(0)),
            fix=stats.fix, detail=detail,
        ))

    mean_prefix = c.mean_prefix_tokens
    no_bp_saving, moved = bucket_saving("no_breakpoint")
    if no_bp_saving > 0 and "no_breakpoint" in c.affected:
        buckets.append("no_breakpoint")
        missed += moved
        affected = c.affected["no_breakpoint"]
        lines, files = c.examples.get("no_breakpoint", ((fam.first_line,), (fam.first_file,)))
        where = c.suggested_path or "the last system block"
        if c.misplaced_bp and c.bp_requests:
            problem = (f"the breakpoint ({c.bp_path or 'automatic, on the last block'}) is not at the end of the "
                       f"~{mean_prefix:,.0f}-token stable prefix, so the varying part is what gets cached")
        else:
            problem = f"a ~{mean_prefix:,.0f}-token prefix repeats on every request but nothing marks it for caching"
        findings.append(Finding(
            lever="cache", family=fam.id, label=fam.label, cause="no_breakpoint", block_path=where, offset=None,
            example_lines=list(lines), example_files=list(files), requests=affected.requests,
            cost_usd=pricer.total(affected), saving_usd=no_bp_saving,
            fix=f"{problem}: add \"cache_control\": {{\"type\": \"ephemeral\"}} to {where} (the end of the stable "
                "prefix; a string system prompt becomes [{\"type\": \"text\", \"text\": ..., \"cache_control\": ...}])",
            detail={"prefix_tokens_estimate": round(mean_prefix)},
        ))

    if c.bp_requests and c.zero_counter_bp * 2 >= c.bp_requests and c.requests:
        estimate = c.bp_tokens if c.bp_tokens is not None else round(mean_prefix)
        if estimate < c.min_tokens:
            affected_cost = fam_cost
            findings.append(Finding(
                lever="cache", family=fam.id, label=fam.label, cause="below_min_cacheable", block_path=c.bp_path,
                offset=None, example_lines=[fam.first_line], example_files=[fam.first_file],
                requests=c.zero_counter_bp, cost_usd=affected_cost, saving_usd=Decimal(0),
                fix=(f"the prefix up to the breakpoint at {c.bp_path} is about {estimate:,} tokens, under the "
                     f"{c.min_tokens:,}-token minimum this model caches, so nothing is ever written or read (both "
                     "cache counters are 0): move more stable content (instructions, examples, tool definitions) "
                     f"before the breakpoint to pass {c.min_tokens:,} tokens, or drop the cache_control"),
                detail={"prefix_tokens_estimate": estimate, "min_cacheable_tokens": c.min_tokens},
            ))

    # TTL: 5m or 1h, from this family's own gaps
    main_key = max(acc.v, key=lambda k: acc.v[k][0]) if acc.v else None
    current = "none" if not c.bp_requests else ("1h" if c.bp_1h * 2 > c.bp_requests else "5m")
    advice = None
    if main_key is not None:
        rates = pricer.rates(main_key)
        base = float(rates.input) or 1.0
        advice = ttl_advice(c.gaps, float(rates.cache_read) / base, float(rates.cache_write_5m) / base,
                            float(rates.cache_write_1h) / base, mean_prefix, current)
        ttl_saving, moved = bucket_saving("ttl")
        advice["saving_usd_if_switched"] = usd(ttl_saving)
        if current != "1h" and ttl_saving > 0 and mean_prefix >= c.min_tokens and c.gaps.get("le_1h", 0) >= 3:
            advice["recommended"] = "1h"
            buckets.append("ttl")
            missed += moved
            lines, files = c.examples.get("ttl", ((fam.first_line,), (fam.first_file,)))
            where = c.bp_path or c.suggested_path or "the end of the stable prefix"
            affected = c.affected.get("ttl", CostAcc())
            findings.append(Finding(
                lever="cache", family=fam.id, label=fam.label, cause="ttl_expired", block_path=where, offset=None,
                example_lines=list(lines), example_files=list(files), requests=c.gaps.get("le_1h", 0),
                cost_usd=pricer.total(affected), saving_usd=ttl_saving,
                fix=(f"{c.gaps.get('le_1h', 0)} requests came 5-60 minutes after the previous one of this family, "
                     f"after the 5-minute cache had expired: use \"cache_control\": {{\"type\": \"ephemeral\", "
                     f"\"ttl\": \"1h\"}} at {where}. {advice['arithmetic']}"),
                detail={"ttl": advice},
            ))
        elif current == "1h" and ttl_saving > 0:
            advice["recommended"] = "5m"
        elif current != "1h":
            advice["recommended"] = "5m"

    unexplained = CostAcc.total(a for (b, _), a in c.deltas.items() if b == "unexplained")
    row = {
        "family": fam.id,
        "label": fam.label,
        "requests": c.requests,
        "hit_ratio": round(read / prompt, 4) if prompt else 0.0,
        "read_tokens": read,
        "written_tokens": written,
        "uncached_tokens": uncached,
        "missed_tokens": missed,
        "unexplained_missed_tokens": sum(v[4] for v in unexplained.v.values() if v[4] > 0),
        "breakpoint": {
            "requests_with_breakpoint": c.bp_requests,
            "path": c.bp_path,
            "suggested_path": c.suggested_path,
            "prefix_tokens_estimate": round(mean_prefix),
            "min_cacheable_tokens": c.min_tokens,
        },
        "ttl": advice,
        "concurrent_misses": c.concurrent,
        "unclassified_divergences": c.unclassified,
        "unclassified_example": None if c.unclassified_example is None else {
            "block_path": c.unclassified_example.block_path, "offset": c.unclassified_example.offset,
            "example_lines": list(c.unclassified_example.lines)},
        "causes": sorted({f.cause for f in findings}),
        "saving_usd": usd(sum((f.saving_usd for f in findings), Decimal(0))),
    }
    return findings, buckets, row


def _tokens_section(auditor: Auditor, counter: Any, findings: list[Finding]) -> dict[str, Any]:
    if not auditor.options.recount or not auditor.sample:
        return {"recounted": 0, "estimate": None, "rows": []}
    from parity import tokens

    counter = counter or tokens.TokenCounter()
    rows = tokens.recount(auditor.sample, counter)
    estimate = any(r.estimate for r in rows)
    diffs = [r for r in rows if r.difference is not None and r.logged_input_tokens]
    off = [r for r in diffs if abs(r.difference) > 0.02 * r.logged_input_tokens]
    section = {
        "recounted": len(rows),
        "estimate": estimate,
        "label": tokens.ESTIMATE_LABEL if estimate else "count_tokens",
        "differing_over_2pct": len(off),
        "rows": [r.to_dict() for r in rows[:50]],
    }
    if not estimate and off and len(off) * 10 >= len(diffs):
        files = list(auditor.inputs)
        findings.append(Finding(
            lever="tokens", family="*", cause="usage_mismatch", requests=len(off),
            example_lines=[r.line for r in off[:2]], example_files=files[:1] * len(off[:2]) if len(files) == 1 else [],
            fix=("count_tokens disagrees with the logged usage by more than 2 % on "
                 f"{len(off)} of {len(diffs)} recounted requests: check that logs record the request as sent "
                 "(system prompt, tools and images included)"),
        ))
    return section


def _share(part: str, whole: str) -> float:
    w = Decimal(whole)
    return round(float(_RATIO.divide(Decimal(part), w)), 4) if w else 0.0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _rightsize_cause(reasons: list[str]) -> str:
    first = reasons[0].split(":", 1)[0]
    return {"short": "short_outputs", "closed set": "closed_set_outputs", "extractive": "extractive_outputs"}.get(
        first, "simple_outputs")

