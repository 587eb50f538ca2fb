"""The audit pipeline: one streaming pass over Exchanges, bounded state per family, a JSON report at the end.

The pass is `parity.audit.auditor` (bounded state per family), the report `parity.audit.report`, and large
JSONL files are read by several processes (`parity.audit.parallel`).

`audit_exchanges(items)` is the entry point for any reader yielding `(source, line, Exchange | Rejected)`;
`audit_paths(paths)` reads any format `parity.readers` knows itself. Both add the report's `sources` list: each
input's records, Parity's cost and the source's own cost (where the format carries one), side by side.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from parity.audit.auditor import AuditOptions, Auditor
from parity.audit.cost import Pricer
from parity.audit.parallel import audit_jsonl_parallel, default_workers
from parity.audit.report import AuditReport, SourceTally, add_sources, build_report
from parity.errors import InputError
from parity.exchange import Exchange, Rejected, read_jsonl_span
from parity.pricing import PriceTable
from parity.ledger.schema import display_url
from parity.readers import FORMATS, detect_format, read_exchanges

__all__ = ["AuditOptions", "AuditReport", "Auditor", "audit_exchanges", "audit_paths"]

Progress = Callable[[int, int], None]  # (done, total) in bytes (or records when the size is unknown)


def audit_exchanges(
    items: Iterable[tuple[str, int, Exchange | Rejected] | Exchange],
    *,
    options: AuditOptions | None = None,
    table: PriceTable | None = None,
    counter: Any = None,
    source: str = "exchanges",
) -> AuditReport:
    """Audit records from any reader in one pass.

    Items are `(source, line, Exchange | Rejected)` as readers yield them, or bare Exchanges (a recorded list,
    e.g. the demo's): those are numbered 1, 2, ... in order and reported as lines of `source`.
    """
    pricer = Pricer(table)
    auditor = Auditor(options, pricer=pricer)
    tallies: dict[str, SourceTally] = {}
    for n, entry in enumerate(items, 1):
        if isinstance(entry, (Exchange, Rejected)):
            entry = (source, n, entry)
        name, line, item = entry
        tally = tallies.get(name)
        if tally is None:
            tally = tallies[name] = SourceTally(name, _format_of(item), pricer)
        tally.observe(item)
        auditor.observe(name, line, item)
    return add_sources(build_report(auditor, counter=counter), list(tallies.values()))


def _format_of(item: Exchange | Rejected) -> str:
    return item.tags.get("source.format", "exchanges") if isinstance(item, Exchange) else "exchanges"


def audit_paths(
    paths: Iterable[str],
    *,
    fmt: str = "auto",
    options: AuditOptions | None = None,
    table: PriceTable | None = None,
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
    tallies: list[SourceTally] = []
    for path in paths:
        kind = detect_format(path) if fmt == "auto" else fmt
        if kind not in FORMATS or kind == "auto":
            raise InputError(f"unknown input format {kind!r}; use one of {', '.join(FORMATS)}", field="format")
        name = display_url(path)  # a database URL is named without its password everywhere in the report
        tally = SourceTally(name, kind, pricer)
        tallies.append(tally)
        if kind == "jsonl":
            if not os.path.exists(path):
                raise InputError("no such file", file=path)
            n = workers if workers is not None else default_workers(sizes[path])
            if n > 1:
                partial = audit_jsonl_parallel(path, n, options, pricer, lambda d, base=done_before: progress and progress(
                    base + d, total))
                tally.merge_auditor(partial)
                auditor.merge(partial)
            else:
                for line, item, pos in read_jsonl_span(path):
                    tally.observe(item)
                    auditor.observe(name, line, item)
                    if progress and line % 2000 == 0:
                        progress(done_before + pos, total)
        else:
            for line, item in read_exchanges(path, format=kind):  # type: ignore[arg-type]
                tally.observe(item)
                auditor.observe(name, line, item)
        done_before += sizes[path]
        if progress:
            progress(done_before, total)
    auditor.pricer = pricer
    return add_sources(build_report(auditor, counter=counter), tallies)
