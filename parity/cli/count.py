"""`parity count FILE --model M`: input tokens from Claude's count_tokens, or a clearly labelled offline estimate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from parity.cli.base import app, console, err_console
from parity.errors import InputError
from parity.exchange import read_jsonl
from parity.readers import is_otlp_document
from parity.tokens import ESTIMATE_LABEL, Recount, TokenCounter, recount, sample_lines
from parity.report.tables import fit


def classify(path: Path) -> tuple[str, Any]:
    """('exchanges', reader) | ('otlp', reader) | ('request', dict) | ('text', str) for a FILE given to count."""
    from parity.readers.otel import read_otlp

    with open(path, encoding="utf-8", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        head = json.loads(first) if first else None
    except ValueError:
        head = None
    if isinstance(head, dict) and "request" in head:
        return "exchanges", read_jsonl(path)
    if is_otlp_document(head):
        return "otlp", read_otlp(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InputError(f"looks like JSON but does not parse ({exc}); fix it, or give a plain text file",
                             file=str(path)) from None
        if is_otlp_document(doc):
            return "otlp", read_otlp(path)
        if isinstance(doc, dict) and isinstance(doc.get("request"), dict):
            return "request", doc["request"]
        if isinstance(doc, dict) and "messages" in doc:
            return "request", doc
        raise InputError("a JSON object with neither 'messages' (a request) nor 'request' (an Exchange)", file=str(path))
    return "text", text


def make_counter(base_url: str | None, offline: bool, no_cache: bool) -> TokenCounter:
    """Online when --base-url, ANTHROPIC_BASE_URL or ANTHROPIC_API_KEY is set (and not --offline)."""
    if offline:
        return TokenCounter()
    base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL")
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not base_url and not key:
        return TokenCounter()
    kwargs: dict[str, Any] = {"base_url": base_url, "api_key": key}
    if no_cache:
        kwargs["cache_path"] = None
    return TokenCounter(**kwargs)


def _summary(rows: list[Recount]) -> dict[str, Any]:
    diffs = [r.difference for r in rows if r.difference is not None]
    logged = [r.logged_input_tokens for r in rows if r.logged_input_tokens]
    out: dict[str, Any] = {"requests": len(rows), "compared": len(diffs)}
    if diffs:
        out["mean_difference"] = round(sum(diffs) / len(diffs), 2)
        out["max_abs_difference"] = max(abs(d) for d in diffs)
        out["total_counted"] = sum(r.input_tokens for r in rows if r.difference is not None)
        out["total_logged"] = sum(logged)
        out["relative_difference"] = round((out["total_counted"] - out["total_logged"]) / out["total_logged"], 6) if logged else None
    return out


@app.command("count")
def count_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A request JSON, a text file, Exchange JSONL or an OTLP export."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to count for (default: each request's own)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Count with count_tokens at this API (e.g. the emulator)."),
    sample: int = typer.Option(20, "--sample", min=1, help="For logs: how many requests to recount (uniform sample)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    offline: bool = typer.Option(False, "--offline", help="Estimate offline even if an API key is set."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the local count cache."),
) -> None:
    """Count input tokens with Claude's count_tokens (cached locally); without a key, a labelled estimate."""
    kind, data = classify(file)
    with make_counter(base_url, offline, no_cache) as counter:
        source = f"count_tokens at {counter.endpoint}" if counter.online else ESTIMATE_LABEL
        if kind in ("request", "text"):
            request = data if kind == "request" else {"messages": [{"role": "user", "content": data}]}
            result = counter.count(request, model=model)
            if as_json:
                console.print_json(json.dumps({"model": result.model, "input_tokens": result.input_tokens,
                                               "estimate": result.estimate, "cached": result.cached, "source": source}))
                if result.estimate:
                    err_console.print(ESTIMATE_LABEL)
                return
            note = " (cached)" if result.cached else ""
            console.print(f"[bold]{result.input_tokens:,}[/] input tokens for {result.model}: {source}{note}")
            return
        rows = recount(sample_lines(data, sample), counter, model=model)
        summary = _summary(rows)
        if as_json:
            console.print_json(json.dumps({"file": str(file), "source": source, "estimate": not counter.online,
                                           "results": [r.to_dict() for r in rows], "summary": summary}))
            if not counter.online:
                err_console.print(ESTIMATE_LABEL)
            return
        table = Table(title=f"{len(rows)} sampled requests from {file.name}: {source}")
        for name in ("line", "model", "counted", "logged", "difference"):
            table.add_column(name, justify="left" if name == "model" else "right")
        for r in rows:
            diff = "" if r.difference is None else f"{r.difference:+,}"
            logged = "" if r.logged_input_tokens is None else f"{r.logged_input_tokens:,}"
            table.add_row(str(r.line), r.model, f"{r.input_tokens:,}", logged, diff)
        console.print(fit(table, console))
        if summary.get("compared"):
            console.print(
                f"compared {summary['compared']}: counted {summary['total_counted']:,} vs logged "
                f"{summary['total_logged']:,} ({summary['relative_difference']:+.2%}); "
                f"largest difference {summary['max_abs_difference']:,} tokens"
            )
        if not counter.online:
            console.print(f"[yellow]{ESTIMATE_LABEL}[/]: differences from logged usage reflect the approximation")
