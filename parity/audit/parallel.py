"""Large Exchange JSONL files audited by several processes: the file is split at line boundaries, each worker
reads its byte range with the one JSONL reader (`parity.exchange.read_jsonl_span`) into its own `Auditor`, and
the partial auditors merge exactly (only the one pair of requests per family that straddles a split is not
diffed for the cache).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from typing import Any

from parity.audit.auditor import AuditOptions, Auditor
from parity.audit.cost import Pricer
from parity.exchange import read_jsonl_span

PARALLEL_FROM_BYTES = 64 * 1024 * 1024
"""Smaller files are read in the calling process: starting workers costs more than it saves."""


def default_workers(size: int) -> int:
    """How many processes read a file of `size` bytes by default."""
    if size < PARALLEL_FROM_BYTES:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


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
        for line, item, pos in read_jsonl_span(path, start, end, first_line):
            auditor.observe(path, line, item)
            if line % 2000 == 0:
                done[k] = pos
        done[k] = end - start
        out.put((k, auditor, None))
    except BaseException as exc:  # noqa: BLE001 - report it to the parent rather than hang it
        out.put((k, None, f"{type(exc).__name__}: {exc}"))


_TABLE: list[Any] = [None]


def audit_jsonl_parallel(path: str, n: int, options: AuditOptions, pricer: Pricer, progress: Callable[[int], Any]
                    ) -> Auditor:
    """Audit one JSONL file with `n` worker processes (forked: they share the parent's price table) and merge."""
    ctx = multiprocessing.get_context("fork")
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


__all__ = ["PARALLEL_FROM_BYTES", "audit_jsonl_parallel", "default_workers"]
