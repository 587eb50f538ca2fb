"""The one task rule: the same request is the same task to `serve`, `audit`, `prove` and the ledger."""

from __future__ import annotations

import json

from parity.fingerprint import fingerprint
from parity.audit.run import audit_paths
from parity.exchange import Exchange
from parity.ledger.reader import read_rows
from parity.ledger.writer import LedgerEntry, LedgerWriter
from parity.task import named_task, task_of

REQUEST = {"model": "claude-opus-4-8", "max_tokens": 10, "messages": [{"role": "user", "content": "Classify: hi"}]}


def test_first_match_wins_tag_then_header_then_metadata():
    req = {**REQUEST, "metadata": {"user_id": "team:core;task:from_meta"}}
    assert named_task(req, tags={"task": "from_tag"}, headers={"x-parity-task": "h"}).how == "tag"
    assert named_task(req, headers={"x-parity-task": " from_header "}) == named_task(
        {**REQUEST, "metadata": {"user_id": "task=from_header"}}).__class__("from_header", "header")
    assert named_task(req).name == "from_meta" and named_task(req).how == "metadata"
    assert named_task({**REQUEST, "metadata": {"task": "plain"}}).name == "plain"
    assert named_task({**REQUEST, "metadata": {"user_id": "user-42"}}) is None
    assert named_task(REQUEST) is None


def test_a_fingerprint_names_a_task_only_when_the_caller_gives_it():
    assert task_of(REQUEST) is None
    found = task_of(REQUEST, fingerprints={fingerprint(REQUEST): "triage"})
    assert found is not None and (found.name, found.how) == ("triage", "fingerprint")
    tagged = task_of(REQUEST, tags={"task": "other"}, fingerprints={fingerprint(REQUEST): "triage"})
    assert tagged is not None and tagged.name == "other"


def _exchange(request: dict, tags: dict | None = None) -> Exchange:
    return Exchange.from_dict({
        "request": request,
        "response": {"id": "msg_1", "type": "message", "role": "assistant", "model": request["model"],
                     "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": 10, "output_tokens": 2}},
        "started_at": "2026-11-24T10:00:00Z", "duration_ms": 100, "tags": tags or {},
    })


def test_audit_and_ledger_read_a_metadata_task_as_serve_does(tmp_path):
    request = {**REQUEST, "metadata": {"user_id": "task:triage"}}
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(_exchange(request).to_dict()) + "\n")
    report = audit_paths([str(log)])
    families = {f["family"]: f["kind"] for f in report.to_json()["by_family"]}
    assert families == {"triage": "tag"}
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = LedgerWriter(url)
    writer.write(LedgerEntry(_exchange(request)))
    writer.close()
    assert [r.exchange.request["metadata"] for r in read_rows(url, task="triage")] == [{"user_id": "task:triage"}]
