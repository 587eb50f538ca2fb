"""`parity audit` (where the money goes, what each lever saves) and `parity cache-diff` (can B read A's cache)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from parity.cli.base import app, console, err_console
from parity.errors import InputError
from parity.pricing import PriceTable


@app.command("audit")
def audit(
    paths: Optional[list[str]] = typer.Argument(
        None, help="Log files (Exchange JSONL, OTLP JSON, LiteLLM, Langfuse incl. Parquet, Helicone, Admin API usage "
        "report), ledger URLs or a LiteLLM postgresql:// URL; the format is detected per source."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON (docs/audit-json.md)."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML report with plots."),
    fmt: str = typer.Option("auto", "--format", help="Force a format: auto, jsonl, otlp (OpenTelemetry GenAI spans), "
                            "ledger, litellm, langfuse, helicone or anthropic-usage."),
    prices: Optional[list[Path]] = typer.Option(None, "--prices", help="Extra price table TOML file(s)."),
    workers: Optional[int] = typer.Option(None, help="Processes for large JSONL files (default: up to 2)."),
    top: int = typer.Option(10, help="Rows shown per table."),
    max_families: int = typer.Option(2000, help="Template families tracked; later ones share '(other)'."),
    max_malformed: int = typer.Option(10_000, help="Malformed lines listed (all are counted); 0 = no limit."),
    candidate_model: Optional[str] = typer.Option(None, help="Cheaper model to price right-size candidates at."),
    night_hours: str = typer.Option("0-6", help="UTC hours counted as night for batch detection, e.g. 22-6."),
    recount: int = typer.Option(0, help="Recount this many sampled requests' tokens and compare with logged usage."),
    base_url: Optional[str] = typer.Option(None, help="API base URL for --recount (count_tokens; else an estimate) "
                                           "and --admin-usage."),
    api_key: Optional[str] = typer.Option(None, envvar="ANTHROPIC_API_KEY", help="API key for --recount."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No terminal report (write --json/--html only)."),
    plan_out: Optional[Path] = typer.Option(None, "--plan", help="Write the plan as a policy file for `parity serve --policy`: cache fixes applied, prompt changes proposed, deferral and prove commands."),
    admin_usage: bool = typer.Option(False, "--admin-usage", help="Also audit the Admin API usage report, fetched "
                                     "with $ANTHROPIC_ADMIN_KEY from --base-url (default $ANTHROPIC_BASE_URL, else "
                                     "the API) for --since..--until."),
    since: Optional[str] = typer.Option(None, help="First UTC day (YYYY-MM-DD) of the usage report for --admin-usage."),
    until: Optional[str] = typer.Option(None, help="Last UTC day (YYYY-MM-DD) of the usage report (default: today)."),
    save_usage: Optional[Path] = typer.Option(None, "--save-usage", help="Keep the fetched usage report in this file."),
) -> None:
    """Audit Claude API logs: exact spend, cache breaks (the block and offset), batchable traffic, right-size
    candidates, and the savings of each lever, stacked."""
    from parity.audit.run import AuditOptions, audit_paths
    from parity.readers import FORMATS
    from parity.readers.anthropic_admin import USAGE_FORMAT

    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", field="--format")
    paths = list(paths or [])
    if admin_usage:
        if fmt not in ("auto", USAGE_FORMAT):
            raise InputError("--admin-usage adds the usage report, which is not in the --format given; audit the "
                             "other logs in a separate run", field="--format")
        scratch = tempfile.TemporaryDirectory(prefix="parity-usage-")  # removed when the command returns
        paths.append(str(_fetch_usage(since, until, base_url,
                                      save_usage or Path(scratch.name) / "anthropic-usage.jsonl")))
    elif since or until or save_usage:
        raise InputError("--since, --until and --save-usage go with --admin-usage", field="--admin-usage")
    if not paths:
        raise InputError("give log files or database URLs to audit, or --admin-usage to fetch the usage report")

    table = PriceTable.load([str(p) for p in prices]) if prices else None
    options = AuditOptions(max_families=max_families, max_malformed=max_malformed, top=top,
                           night=_night(night_hours), candidate_model=candidate_model, recount=recount)
    counter = None
    if recount and (base_url or api_key):
        from parity.tokens import TokenCounter

        counter = TokenCounter(base_url=base_url, api_key=api_key)
    started = time.perf_counter()
    with Progress(TextColumn("[bold]auditing[/]"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task("audit", total=None)

        def report_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        report = audit_paths(paths, fmt=fmt, options=options, table=table, workers=workers,
                             progress=report_progress, counter=counter)
    elapsed = time.perf_counter() - started
    data = report.to_json()
    if json_out is not None:
        report.write_json(json_out)
    if html_out is not None:
        from parity.report.audit_html import write_audit_html

        write_audit_html(data, html_out)
    if plan_out is not None:
        _write_plan(data, plan_out, quiet)
    if not quiet:
        from parity.report.audit_terminal import render_report

        render_report(data, console, top=top, elapsed=elapsed)
        for label, path in (("JSON", json_out), ("HTML", html_out)):
            if path is not None:
                console.print(f"{label} report written to {path}")


def _fetch_usage(since: Optional[str], until: Optional[str], base_url: Optional[str], target: Path) -> Path:
    """The Admin API usage report for whole UTC days since..until (inclusive), every page, saved to `target`."""
    from datetime import date, datetime, time as day_start, timedelta, timezone

    from parity.readers.anthropic_admin import USAGE_FORMAT, fetch_report, write_pages

    def day(value: Optional[str], name: str, default: Optional[date]) -> date:
        if value is None:
            if default is None:
                raise InputError("say which days to fetch: --since YYYY-MM-DD (and --until, default today)",
                                 field=name)
            return default
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InputError(f"expected a day as YYYY-MM-DD, got {value!r}", field=name) from None

    first = day(since, "--since", None)
    last = day(until, "--until", datetime.now(timezone.utc).date())
    if last < first:
        raise InputError(f"--until {last} is before --since {first}", field="--until")
    start = datetime.combine(first, day_start(), timezone.utc)
    end = datetime.combine(last + timedelta(days=1), day_start(), timezone.utc)
    return write_pages(fetch_report(USAGE_FORMAT, start, end, base_url=base_url), target)


def _write_plan(data: dict[str, Any], path: Path, quiet: bool) -> None:
    from parity.audit.plan import build_plan, describe_plan, write_plan

    plan = build_plan(data)
    write_plan(plan, path)
    if not quiet:
        labels = {row["family"]: row["label"] for row in data.get("by_family", [])}
        for line in describe_plan(plan, labels):
            console.print(escape(line), soft_wrap=True)
        console.print(f"plan written to {path} ({len(plan.tasks)} famil{'y' if len(plan.tasks) == 1 else 'ies'}); "
                      f"serve it with `parity serve --policy {path}`")


def _night(spec: str) -> Any:
    from parity.audit.batch import NightPolicy

    try:
        start, end = (int(x) for x in spec.split("-", 1))
        if not (0 <= start <= 23 and 0 <= end <= 24):
            raise ValueError
    except ValueError:
        raise InputError(f"expected two UTC hours like 0-6 or 22-6, got {spec!r}", field="--night-hours") from None
    return NightPolicy(start_hour=start, end_hour=end)


# --- cache-diff -----------------------------------------------------------------------------------------------


@app.command("cache-diff")
def cache_diff_command(
    a: Path = typer.Argument(..., help="Request body A (JSON; an Exchange record's request is used too)."),
    b: Path = typer.Argument(..., help="Request body B, sent after A."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the diagnosis as JSON."),
) -> None:
    """Could request B read the prompt cache request A wrote? If not: the block, the offset and the cause."""
    from parity.audit.cache_diff import cache_diff

    result = cache_diff(_load_request(a), _load_request(b))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if result["breaks_cache"]:
        where = result["block_path"] or ""
        if result["offset"] is not None:
            where += f" offset {result['offset']}"
        console.print(f"[bold red]B breaks the cache[/] from the [bold]{result['invalidated_from']}[/] level at "
                      f"[magenta]{escape(where)}[/]: {result['cause'] or 'unclassified change'}"
                      + (f" ({escape(result['example'])})" if result.get("example") else ""))
        if result.get("fix"):
            console.print(f"  fix: {escape(result['fix'])}")
    else:
        console.print(f"[bold green]B can reuse A's cached prefix[/] (about {result['reusable_tokens']:,} tokens, "
                      "estimated)")
        if result.get("note"):
            where = result["block_path"] or ""
            if result["offset"] is not None:
                where += f" offset {result['offset']}"
            console.print(f"  B differs at [magenta]{escape(where)}[/] ({result['reason']}), which invalidates the "
                          f"{result['invalidated_from']} level: {escape(result['note'])}")
        elif result.get("first_difference"):
            console.print(f"  {escape(result['first_difference']['note'])}")
    for warning in result["warnings"]:
        console.print(f"  [yellow]{warning['cause']}[/]: {escape(warning['message'])}")
    if json_out is not None:
        console.print(f"JSON written to {json_out}")


def _load_request(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", file=str(path),
                         line=exc.lineno) from None
    if isinstance(data, dict) and "messages" not in data and isinstance(data.get("request"), dict):
        data = data["request"]  # an Exchange record
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise InputError("expected a Messages API request body (an object with 'messages')", file=str(path))
    return data
