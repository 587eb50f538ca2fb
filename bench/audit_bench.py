"""Benchmark of `parity audit`: a large Exchange JSONL log with long shared prefixes, audited with timing and peak RSS.

The log looks like real traffic: two dozen prompt templates (system prompts of 2-4 KB shared by every request of
the template, tool lists on half of them), per-request user turns and answers, usage consistent with caching
(mostly reads, writes after a gap), several models, tags on some jobs, and the problems the audit looks for
(a timestamp in one system prompt, tool JSON with unsorted keys, a tool set that varies per user, a template
without a breakpoint, a nightly job). Lines average about 4 KB.

    .venv/bin/python bench/audit_bench.py                 # 1,000,000 lines (about 4 GB in a temp file)
    .venv/bin/python bench/audit_bench.py --lines 50000   # a quick run while developing
    .venv/bin/python bench/audit_bench.py --lines 200000 --lines 1000000   # memory vs file size

Prints, per size: file size, generation time, audit wall time, lines/s and MB/s, and peak RSS of the audit
(the parent and its worker processes, sampled from /proc every 0.2 s, plus the largest single process from
getrusage), and the peak over each half of the run: equal halves mean memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from parity.pricing import min_cacheable_tokens

try:
    import orjson

    def dumps(value: object) -> str:
        return orjson.dumps(value).decode()
except ImportError:  # pragma: no cover
    def dumps(value: object) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

WORDS = ("account order refund invoice shipping parcel address delivery warranty subscription plan upgrade "
         "downgrade password login error payment card charge receipt discount coupon return exchange damaged "
         "missing late early tracking carrier customs tax region store policy manager escalate").split()
MODELS = ("claude-sonnet-4-6", "claude-opus-4-8", "claude-sonnet-4-5", "claude-sonnet-5", "claude-opus-5")
LABELS = ("billing", "shipping", "refund", "technical", "other")
CHARS_PER_TOKEN = 2  # dense prompts (JSON, ids, code); keeps 2-3 KB prefixes above the 1,024-token minimum


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_templates(rng: random.Random) -> list[dict]:
    templates = []
    for t in range(24):
        system = f"You are assistant #{t} of the ACME support platform. " + " ".join(
            sentence(rng, rng.randint(8, 18)) for _ in range(rng.randint(14, 28)))
        tools = None
        if t % 2 == 0:
            tools = [{"name": f"tool_{t}_{k}", "description": sentence(rng, 20),
                      "input_schema": {"type": "object", "properties": {
                          "id": {"type": "string", "description": sentence(rng, 6)},
                          "limit": {"type": "integer", "description": sentence(rng, 6)},
                          "verbose": {"type": "boolean"}}, "required": ["id"]}}
                     for k in range(rng.randint(2, 5))]
        templates.append({
            "model": MODELS[t % len(MODELS)],
            "system": system,
            "tools": tools,
            "cache": t != 5,  # one template never marks its prefix
            "timestamp": t == 3,  # one puts the current time in its system prompt
            "unsorted": t == 6,  # one serialises tool JSON with keys in random order
            "toolset": t == 8,  # one sends a per-user subset of tools
            "tags": {"job": "nightly-digest"} if t == 11 else ({"task": "triage"} if t == 1 else None),
            "stream": t % 3 == 0,
            "classifier": t == 12,  # answers with one of five labels
            "weight": rng.uniform(0.3, 3.0),
        })
    return templates


def generate(path: Path, lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    templates = make_templates(rng)
    weights = [t["weight"] for t in templates]
    users = [dumps(sentence(rng, rng.randint(20, 120))) for _ in range(500)]
    answers = [dumps(sentence(rng, rng.randint(5, 120))) for _ in range(300)]
    pre = []
    for t in templates:
        system_block = {"type": "text", "text": t["system"]}
        if t["cache"]:
            system_block["cache_control"] = {"type": "ephemeral"}
        tools_json = dumps(t["tools"]) if t["tools"] else None
        pre.append((dumps([system_block]), tools_json, len(t["system"]) // CHARS_PER_TOKEN,
                    len(tools_json or "") // CHARS_PER_TOKEN))
    clock = datetime(2026, 11, 1, tzinfo=timezone.utc)
    last_seen: list[datetime | None] = [None] * len(templates)
    last_prefix: list[tuple[str, str | None] | None] = [None] * len(templates)
    min_tokens = {m: min_cacheable_tokens(m) for m in MODELS}
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            k = rng.choices(range(len(templates)), weights)[0]
            t = templates[k]
            clock += timedelta(milliseconds=rng.randint(50, 2500))
            started = clock.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            system_json, tools_json, sys_tokens, tool_tokens = pre[k]
            if t["timestamp"]:
                block = {"type": "text", "text": t["system"].replace("platform.", f"platform. Now: {started}.", 1),
                         "cache_control": {"type": "ephemeral"}}
                system_json = dumps([block])
            if t["unsorted"] and rng.random() < 0.5:
                shuffled = []
                for tool in t["tools"]:
                    props = list(tool["input_schema"]["properties"].items())
                    rng.shuffle(props)
                    shuffled.append({**tool, "input_schema": {**tool["input_schema"], "properties": dict(props)}})
                tools_json = dumps(shuffled)
            if t["toolset"]:
                tools_json = dumps(t["tools"][: 1 + (i % len(t["tools"]))])
            user = users[rng.randrange(len(users))]
            answer = dumps(rng.choice(LABELS)) if t["classifier"] else answers[rng.randrange(len(answers))]
            user_tokens = len(user) // CHARS_PER_TOKEN
            out_tokens = max(1, len(answer) // CHARS_PER_TOKEN)
            prefix = sys_tokens + tool_tokens
            same_prefix = last_prefix[k] == (system_json, tools_json)
            gap_ok = last_seen[k] is not None and (clock - last_seen[k]).total_seconds() < 300
            last_seen[k], last_prefix[k] = clock, (system_json, tools_json)
            if not t["cache"] or prefix < min_tokens[t["model"]]:
                usage = {"input_tokens": prefix + user_tokens, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": 0, "output_tokens": out_tokens}
            elif gap_ok and same_prefix:
                usage = {"input_tokens": user_tokens, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": prefix, "output_tokens": out_tokens}
            else:
                usage = {"input_tokens": user_tokens, "cache_creation_input_tokens": prefix,
                         "cache_read_input_tokens": 0, "output_tokens": out_tokens,
                         "cache_creation": {"ephemeral_5m_input_tokens": prefix, "ephemeral_1h_input_tokens": 0}}
            request = (f'{{"model":"{t["model"]}","max_tokens":1024,'
                       + (f'"tools":{tools_json},' if tools_json else "")
                       + f'"system":{system_json},"messages":[{{"role":"user","content":{user}}}]'
                       + (',"stream":true' if t["stream"] else "") + "}")
            response = (f'{{"id":"msg_{i:024d}","type":"message","role":"assistant","model":"{t["model"]}",'
                        f'"content":[{{"type":"text","text":{answer}}}],"stop_reason":"end_turn",'
                        f'"stop_sequence":null,"usage":{dumps(usage)}}}')
            tags = t["tags"]
            out.write(f'{{"request":{request},"response":{response},"started_at":"{started}",'
                      f'"duration_ms":{rng.randint(300, 4000)}' + (f',"tags":{dumps(tags)}' if tags else "") + "}\n")
            if i % 997 == 0 and i:
                out.write('{"request": {"model": "claude-sonnet-4-6"}, "broken": true}\n' if i % 2 else "{oops\n")


def _tree_rss_kb(root: int) -> int:
    """Resident memory of a process and its descendants (kB), from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(p for p, parent in parents.items() if parent == pid)
    return total


def run_audit(path: Path, workers: int | None) -> dict:
    cmd = [sys.executable, "-m", "parity", "audit", str(path), "--quiet", "--json", str(path) + ".report.json"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []  # (seconds since start, kB of the whole process tree)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - start, _tree_rss_kb(proc.pid)))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"parity audit failed ({proc.returncode}):\n{err[-3000:]}")
    report = json.loads(Path(str(path) + ".report.json").read_text())
    peak = max((kb for _, kb in samples), default=0)
    # memory that does not grow with the file: the peak while reading the first half vs the second half
    first = max((kb for t, kb in samples if t <= wall / 2), default=0)
    second = max((kb for t, kb in samples if t > wall / 2), default=0)
    return {"wall_s": wall, "peak_tree_rss_mb": peak / 1024, "peak_first_half_mb": first / 1024,
            "peak_second_half_mb": second / 1024,
            "max_single_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "requests": report["totals"]["requests"], "malformed": report["totals"]["malformed"],
            "cost_usd": report["totals"]["cost_usd"], "findings": len(report["findings"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, action="append", help="log lines (repeat for several sizes); "
                        "default 1,000,000")
    parser.add_argument("--workers", type=int, default=None, help="passed to parity audit --workers")
    parser.add_argument("--dir", default=None, help="where to write the log (default: a temp dir, deleted after)")
    parser.add_argument("--keep", action="store_true", help="keep the generated log")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = args.lines or [1_000_000]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            path = Path(tmp) / f"audit-bench-{n}.jsonl"
            t0 = time.perf_counter()
            generate(path, n, args.seed)
            gen = time.perf_counter() - t0
            size = path.stat().st_size
            result = run_audit(path, args.workers)
            print(f"lines={n:,} file={size / 1e6:,.0f} MB ({size / (n + n // 997):,.0f} B/line) generated in {gen:.1f} s")
            print(f"  audit: {result['wall_s']:.1f} s wall, {n / result['wall_s']:,.0f} lines/s, "
                  f"{size / 1e6 / result['wall_s']:,.0f} MB/s; peak RSS {result['peak_tree_rss_mb']:,.0f} MB "
                  f"(all processes), largest process {result['max_single_rss_mb']:,.0f} MB; peak in the first "
                  f"half of the run {result['peak_first_half_mb']:,.0f} MB, second half "
                  f"{result['peak_second_half_mb']:,.0f} MB")
            print(f"  report: {result['requests']:,} requests, {result['malformed']:,} malformed, "
                  f"${result['cost_usd']}, {result['findings']} findings")
            if args.keep:
                kept = Path.cwd() / path.name
                os.replace(path, kept)
                print(f"  kept {kept}")
            else:
                path.unlink()
            Path(str(path) + ".report.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
