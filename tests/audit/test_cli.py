"""`parity audit FILE --json --html` and `parity cache-diff` end to end, on a log recorded the way a team records.

The log is real SDK traffic: `parity.emulator.workloads` requests sent with the `anthropic` SDK to the emulator, recorded by
`parity.wrap` (the emulator's manual clock drives both the cache and the recorded start times). Planted in it:
a timestamp and a request UUID in system prompts, tool JSON with unsorted keys, tools in another order, a tool set
that varies per user, a template whose model alternates, a healthy template, a nightly job on Opus with closed-set
answers; then a malformed line and a record of an unknown model are inserted mid-file. Expected block paths and
offsets are computed here from the logged bytes (first differing character), not by the audit's code.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import parity
from parity.emulator import workloads
from parity.audit import audit_exchanges, audit_paths, validate_report
from parity.report.audit_terminal import print_audit
from parity.cli import app
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.exchange import read_jsonl
from parity.pricing import cost
from parity.wrap import recorder_of, tagged

runner = CliRunner()
N = 8  # requests per cache family
TRIAGE = 24  # enough answers for the right-size lever to judge their shape
UNKNOWN = "claude-imaginary-9"
TOOLS = [
    {"name": name, "description": f"Look up {name.replace('_', ' ')} for the customer's account.",
     "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}, "limit": {"type": "integer"},
                                                        "verbose": {"type": "boolean"}}, "required": ["order_id"]}}
    for name in ("lookup_order", "refund", "escalate")
]
EXPECTED = {  # task tag -> the cache cause planted in it
    "stamped": "volatile_timestamp",
    "trace": "volatile_uuid",
    "orders": "unsorted_json_keys",
    "reordered": "tool_order_changed",
    "per-user": "tool_set_varies",
    "router": "model_switched",
}


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _shuffled_keys(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for t in TOOLS:
        props = list(t["input_schema"]["properties"].items())
        rng.shuffle(props)
        out.append({**t, "input_schema": {**t["input_schema"], "properties": dict(props)}})
    return out


def _plans() -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(11)
    manual = workloads.summary_requests(N, seed=2, cache=True)
    return {
        "summaries": workloads.summary_requests(N, seed=3, cache=True),  # healthy
        "stamped": workloads.summary_requests(N, seed=1, cache=True, stamp=True),
        "trace": [{**r, "system": [{**r["system"][0], "text": f"Request id: {uuid.UUID(int=rng.getrandbits(128))}\n"
                                    + r["system"][0]["text"]}]} for r in manual],
        "orders": [{**r, "tools": _shuffled_keys(rng)} for r in workloads.summary_requests(N, seed=4, cache=True)],
        "reordered": [{**r, "tools": TOOLS if i % 2 else TOOLS[::-1]}
                      for i, r in enumerate(workloads.summary_requests(N, seed=5, cache=True))],
        "per-user": [{**r, "tools": [TOOLS[0], TOOLS[1 + i % 2]]}
                     for i, r in enumerate(workloads.summary_requests(N, seed=6, cache=True))],
        "router": [{**r, "model": "claude-sonnet-4-6"} if i % 2 else r
                   for i, r in enumerate(workloads.summary_requests(N, seed=7, cache=True))],
        "triage": workloads.triage_requests(TRIAGE, seed=8),  # Opus, six labels, nobody waits
    }


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Record the traffic through parity.wrap, insert the bad lines, and index the final file by task."""
    path = tmp_path_factory.mktemp("cli") / "traffic.jsonl"
    clock = ManualClock(datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc).timestamp())
    # recorded start times follow the emulator's clock
    client = parity.wrap(Emulator(clock=clock).client(), sink=str(path), clock=clock.now)
    plans = _plans()
    for i in range(max(len(p) for p in plans.values())):
        for task, requests in plans.items():
            if i >= len(requests):
                continue
            clock.advance(7)
            if task == "triage":
                with tagged(task=task, job="nightly-triage"):
                    client.messages.create(**requests[i])
            else:
                tags = {"task": task, **({"user": f"user-{i % 2}"} if task == "per-user" else {})}
                with tagged(**tags), client.messages.stream(**requests[i]) as stream:
                    stream.get_final_message()
    recorder = recorder_of(client)
    assert recorder is not None and recorder.flush()
    recorder.close()

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 * N + N + TRIAGE
    unknown = json.loads(next(ln for ln in lines if '"nightly-triage"' in ln))
    unknown["request"]["model"] = unknown["response"]["model"] = UNKNOWN
    lines.insert(20, "{this line is not JSON")
    lines.insert(41, json.dumps(unknown))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    by_task: dict[str, list[int]] = {}
    records: dict[int, dict[str, Any]] = {}
    for number, text in enumerate(lines, 1):
        if number in (21, 42):
            continue
        record = json.loads(text)
        records[number] = record
        by_task.setdefault(record["tags"]["task"], []).append(number)
    return {"path": path, "lines": lines, "by_task": by_task, "records": records}


@pytest.fixture(scope="module")
def cli_run(log: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("out")
    json_path, html_path = out / "audit.json", out / "audit.html"
    result = runner.invoke(app, ["audit", str(log["path"]), "--json", str(json_path), "--html", str(html_path)])
    assert result.exit_code == 0, result.output
    return {"output": result.output, "report": json.loads(json_path.read_text()), "html": html_path.read_text()}


def _expected_pair(log: dict[str, Any], task: str, cause: str) -> tuple[int, int]:
    """The first two consecutive requests of the task whose logged bodies differ the way `cause` says."""
    numbers = log["by_task"][task]
    for x, y in zip(numbers, numbers[1:]):
        a, b = log["records"][x]["request"], log["records"][y]["request"]
        if cause == "model_switched" and a["model"] != b["model"]:
            return x, y
        if cause in ("volatile_timestamp", "volatile_uuid") and a["system"] != b["system"]:
            return x, y
        if cause in ("unsorted_json_keys", "tool_order_changed", "tool_set_varies") and (
                _compact(a["tools"]) != _compact(b["tools"])):
            return x, y
    raise AssertionError(f"no pair in {task} shows {cause}")


def _first_diff(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def test_every_planted_cause_is_found_with_its_lines_path_and_offset(log: dict[str, Any], cli_run: dict) -> None:
    report = cli_run["report"]
    validate_report(report)
    cache = {(f["family"], f["cause"]): f for f in report["findings"] if f["lever"] == "cache"}
    assert set(cache) == set(EXPECTED.items()), sorted(cache)
    for task, cause in EXPECTED.items():
        finding = cache[(task, cause)]
        x, y = _expected_pair(log, task, cause)
        assert finding["example_lines"] == [x, y], (task, finding["example_lines"])
        assert finding["example_files"] == [str(log["path"])] * 2
        a, b = log["records"][x]["request"], log["records"][y]["request"]
        if cause in ("volatile_timestamp", "volatile_uuid"):
            assert finding["block_path"] == "system.0.text"
            assert finding["offset"] == _first_diff(a["system"][0]["text"], b["system"][0]["text"])
        elif cause == "model_switched":
            assert (finding["block_path"], finding["offset"]) == ("model", None)
        else:
            index = next(i for i, (p, q) in enumerate(zip(a["tools"], b["tools"])) if _compact(p) != _compact(q))
            assert finding["block_path"] == f"tools.{index}"
            assert finding["offset"] == _first_diff(_compact(a["tools"][index]), _compact(b["tools"][index]))
        assert finding["requests"] >= 1 and finding["fix"]
        assert Decimal(finding["saving_usd"]) > 0, (task, cause)
    stamped = cache[("stamped", "volatile_timestamp")]
    text = log["records"][stamped["example_lines"][0]]["request"]["system"][0]["text"]
    assert text[: stamped["offset"]].startswith("Current time: 2026-11-24T")
    uuid_finding = cache[("trace", "volatile_uuid")]
    assert uuid_finding["offset"] >= len("Request id: ") and "cache" in uuid_finding["fix"]


def test_healthy_template_is_not_flagged(cli_run: dict) -> None:
    report = cli_run["report"]
    assert [f for f in report["findings"] if f["family"] == "summaries" and f["lever"] != "cost"] == []
    row = next(r for r in report["cache"]["families"] if r["family"] == "summaries")
    assert row["causes"] == [] and row["hit_ratio"] > 0.5 and row["missed_tokens"] == 0


def test_bad_lines_are_reported_counted_and_left_out(log: dict[str, Any], cli_run: dict) -> None:
    report = cli_run["report"]
    bad = {m["line"]: m for m in report["malformed"]}
    assert sorted(bad) == [21, 42] and report["totals"]["malformed"] == 2
    assert all(m["file"] == str(log["path"]) for m in bad.values())
    assert "not valid JSON" in bad[21]["reason"]
    assert UNKNOWN in bad[42]["reason"] and "--prices" in bad[42]["reason"]
    # the unknown model is not priced at zero: it is not a request of the totals at all
    assert report["totals"]["requests"] == len(log["records"])
    assert all(UNKNOWN not in row["model"] for row in report["by_model"])
    exact = sum((cost(r["response"]["model"], r["response"]["usage"]).total for r in log["records"].values()),
                Decimal(0))
    assert Decimal(report["totals"]["cost_usd"]) == exact
    assert Decimal(report["totals"]["input_cost_usd"]) + Decimal(report["totals"]["output_cost_usd"]) == exact
    out = cli_run["output"]
    assert "Skipped 2 line(s)" in out
    assert f"{log['path'].name}:21" in out.replace("\n", "") and f"{log['path'].name}:42" in out.replace("\n", "")


def test_batch_and_rightsize_levers_on_the_nightly_job(log: dict[str, Any], cli_run: dict) -> None:
    report = cli_run["report"]
    [batch] = [f for f in report["findings"] if f["lever"] == "batch"]
    assert (batch["family"], batch["cause"], batch["requests"]) == ("triage", "job_tag", TRIAGE)
    assert batch["example_lines"] == log["by_task"]["triage"][:2]
    assert Decimal(batch["saving_usd"]) * 2 == Decimal(batch["cost_usd"])  # 50 % of every category
    [rightsize] = [f for f in report["findings"] if f["lever"] == "rightsize"]
    assert rightsize["family"] == "triage" and rightsize["hypothesis"] is True
    assert rightsize["detail"]["model"] == "claude-opus-4-8"
    stacked = report["savings"]["stacked"]
    assert [s["lever"] for s in stacked["steps"]] == ["cache", "batch", "rightsize"]
    assert Decimal(stacked["saving_usd"]) < Decimal(stacked["sum_of_standalone_usd"])


def test_terminal_and_html_reports(cli_run: dict) -> None:
    out = cli_run["output"]
    for heading in ("Spend: input vs output", "By model", "Top templates by spend", "Cache, per family",
                    "Cache findings", "Batch: traffic nobody waits on", "Right-size candidates", "Savings, stacked"):
        assert heading in out, heading
    for cause in EXPECTED.values():
        assert cause in out
    html = cli_run["html"]
    assert html.lstrip().lower().startswith("<!doctype html")
    assert html.count("<svg") >= 3
    for title in ("Spend per day by category", "Cache hit ratio per family", "Savings waterfall"):
        assert title in html
    lowered = html.lower()
    assert "<script src" not in lowered and "<link" not in lowered and "url(http" not in lowered
    assert 'src="http' not in lowered and "@import" not in lowered


def test_bare_exchanges_audit_like_the_file(log: dict[str, Any], cli_run: dict) -> None:
    """What the demo calls: a list of Exchanges (numbered in order) gives the file's report."""
    items = [item for _, item in read_jsonl(log["path"])]
    assert len(items) == len(log["lines"])
    report = audit_exchanges(items, source=str(log["path"])).to_json()

    def key(data: dict) -> list:
        return sorted((f["lever"], f["family"], f["cause"], f["block_path"] or "", f["offset"] or 0,
                       tuple(f["example_lines"]), f["saving_usd"]) for f in data["findings"])

    assert key(report) == key(cli_run["report"])
    assert report["totals"] == cli_run["report"]["totals"]
    assert [m["line"] for m in report["malformed"]] == [21, 42]


def test_print_audit_compact_summary(log: dict[str, Any]) -> None:
    report = audit_paths([str(log["path"])])
    console = Console(record=True, width=200)
    print_audit(report, console, limit=20)
    text = console.export_text()
    assert "output" in text and "input side" in text
    for cause in EXPECTED.values():
        assert cause in text
    assert "system.0.text offset" in text and "if proven" in text and "Stacked:" in text
    assert "2 line(s) skipped" in text and ":21:" in text
    short = Console(record=True, width=200)
    print_audit(report.data, short, limit=2)
    assert "more findings in the full report" in short.export_text()


# --- parity cache-diff on pairs taken from the log ----------------------------------------------------------


def _cache_diff_cli(tmp_path: Path, a: Any, b: Any, *, indent: int | None = None) -> tuple[dict, str]:
    pa, pb, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "diff.json"
    pa.write_text(json.dumps(a, indent=indent))
    pb.write_text(json.dumps(b))
    result = runner.invoke(app, ["cache-diff", str(pa), str(pb), "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_cache_diff_on_logged_records(log: dict[str, Any], cli_run: dict, tmp_path: Path) -> None:
    findings = {f["family"]: f for f in cli_run["report"]["findings"] if f["lever"] == "cache"}
    levels = {"stamped": "system", "trace": "system", "orders": "tools", "reordered": "tools", "per-user": "tools",
              "router": "tools"}
    for task, cause in EXPECTED.items():
        x, y = findings[task]["example_lines"]
        # whole Exchange records work as inputs, and pretty-printing A changes nothing
        diff, text = _cache_diff_cli(tmp_path, log["records"][x], log["records"][y], indent=2)
        assert diff["breaks_cache"] is True
        assert (diff["cause"], diff["block_path"], diff["offset"]) == (cause, findings[task]["block_path"],
                                                                        findings[task]["offset"])
        assert diff["invalidated_from"] == levels[task]
        assert "breaks the cache" in text and diff["fix"]
    x, y = log["by_task"]["summaries"][:2]
    diff, text = _cache_diff_cli(tmp_path, log["records"][x], log["records"][y])
    assert diff["breaks_cache"] is False and diff["cause"] is None
    assert diff["first_difference"]["block_path"].startswith("messages.0")
    assert "can reuse" in text


def test_cache_diff_key_order_and_appended_turns(log: dict[str, Any], tmp_path: Path) -> None:
    x = log["by_task"]["summaries"][0]
    a = log["records"][x]["request"]
    reordered = {k: a[k] for k in reversed(list(a))}  # top-level key order is not part of the prompt
    diff, _ = _cache_diff_cli(tmp_path, a, reordered)
    assert diff["breaks_cache"] is False and diff["first_difference"] is None
    system = copy.deepcopy(a["system"])
    system[0] = {k: system[0][k] for k in reversed(list(system[0]))}  # inside a block it is
    diff, _ = _cache_diff_cli(tmp_path, a, {**a, "system": system})
    assert diff["breaks_cache"] is True and diff["block_path"] == "system.0" and diff["invalidated_from"] == "system"
    assert diff["cause"] == "unsorted_json_keys"
    hashed = [{k: v for k, v in block.items() if k != "cache_control"} for block in (a["system"][0], system[0])]
    assert diff["offset"] == _first_diff(_compact(hashed[0]), _compact(hashed[1]))  # cache_control is not hashed
    grown = {**a, "messages": [*a["messages"], {"role": "assistant", "content": "Summary: ..."},
                               {"role": "user", "content": "Shorter, please."}]}
    diff, text = _cache_diff_cli(tmp_path, a, grown)
    assert diff["breaks_cache"] is False and diff["first_difference"] is None and "can reuse" in text


def test_docs_name_every_field_the_code_writes(log: dict[str, Any], cli_run: dict, tmp_path: Path) -> None:
    """docs/audit-json.md stays true to the code: each key of a real report and a real cache-diff is documented."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit-json.md").read_text()
    report = cli_run["report"]
    keys = set(report) | set(report["totals"]) | set(report["cache"]["families"][0]) | set(report["savings"])
    keys |= set(report["savings"]["stacked"]) | set(report["findings"][0]) | set(report["by_family"][0])
    keys |= set(report["batch"]) | set(report["batch"]["families"][0]) | set(report["rightsize"])
    keys |= set(report["rightsize"]["candidates"][0]) | set(report["cache"]["families"][0]["breakpoint"])
    x, y = log["by_task"]["stamped"][:2]
    diff, _ = _cache_diff_cli(tmp_path, log["records"][x], log["records"][y])
    keys |= set(diff) - {"tokens_note"}
    spans = re.findall(r"`[^`]+`", doc)  # every backticked name: `cost_usd`, `stacked.order`, `{file, line}`
    missing = sorted(k for k in keys if not any(re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", s) for s in spans))
    assert missing == [], missing
