"""The local journal: a record handed to the recorder is on disk before the answer goes out, and a replica that
dies before its ledger write has it replayed, once, by the next replica to start (real PostgreSQL ledger)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from parity.gateway.keys import KeyLimits
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.recorder import GatewayRecorder, Record
from parity.gateway.streaming import StreamOutcome
from parity.ledger.journal import Journal, orphans
from parity.ledger.reader import read_rows
from parity.ledger.writer import LedgerWriter

from .pg import scratch_schema


@pytest.fixture
def pg():
    with scratch_schema() as url:
        yield url


def _record(i: int) -> Record:
    message = {"id": f"msg_{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
               "content": [{"type": "text", "text": f"answer {i}"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 10, "output_tokens": 3}}
    return Record(endpoint="messages", request={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": []},
                  started_at=datetime.now(timezone.utc), duration_s=0.01, route="passthrough", status=200,
                  message=message, tags={"gateway_request_id": f"req_{i}"})


def _sse(i: int) -> bytes:
    events = [
        ("message_start", {"type": "message_start", "message": {"id": f"msg_s{i}", "type": "message",
                           "role": "assistant", "model": "claude-haiku-4-5", "content": [], "stop_reason": None,
                           "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    import json

    return b"".join(f"event: {e}\ndata: {json.dumps(d, ensure_ascii=False)}\n\n".encode() for e, d in events)


def test_a_dead_replicas_journal_is_replayed_once(pg, tmp_path):
    folder = tmp_path / "journal"
    writer = LedgerWriter(pg)
    recorder = GatewayRecorder(GatewayMetrics(), KeyLimits(), ledger=writer, journal=Journal(folder, replica="dead"))
    for i in range(5):
        recorder.record(_record(i))
    assert recorder.flush(10)  # these five reach the ledger before the "kill"
    writer._transaction = lambda entries: (_ for _ in ()).throw(RuntimeError("killed before the ledger write"))
    for i in range(5, 12):
        recorder.record(_record(i))
    streamed = _record(99)
    streamed.message, streamed.stream = None, StreamOutcome(_sse(99))
    recorder.record(streamed)
    recorder.flush(10)
    assert recorder.journal.pending == 8
    recorder.journal.abandon()  # the process dies: its locks go, its files stay
    assert len(list(read_rows(pg))) == 5

    assert [p.name for p, _ in orphans(folder)] and [len(r) for _, r in orphans(folder)] == [13]
    second = GatewayRecorder(GatewayMetrics(), KeyLimits(), ledger=LedgerWriter(pg), journal=Journal(folder, replica="next"))
    assert second.replay(str(folder)) == 13  # every line; the five already written are skipped by record id
    second.flush(10)
    rows = list(read_rows(pg))
    ids = sorted(r.exchange.response["id"] for r in rows)
    assert ids == sorted([f"msg_{i}" for i in range(12)] + ["msg_s99"])
    stream_row = next(r for r in rows if r.exchange.response["id"] == "msg_s99")
    assert stream_row.exchange.response["content"][0]["text"] == "héllo" and stream_row.cost_usd > 0
    assert [p.name for p in folder.iterdir()] == [second.journal.path.name]  # the dead one's file is gone
    second.close()
    assert list(folder.iterdir()) == []


def test_a_live_replicas_journal_is_left_alone(tmp_path):
    live = Journal(tmp_path, replica="live")
    live.append("r1", {"x": 1})
    assert list(orphans(tmp_path)) == []
    live.close(remove=False)
    assert [len(r) for _, r in orphans(tmp_path)] == [1]


def test_full_files_are_deleted_once_committed(tmp_path):
    journal = Journal(tmp_path, replica="r", rotate_above=100)
    for i in range(10):
        journal.append(f"r{i}", {"text": "x" * 100})
    assert len(list(tmp_path.iterdir())) == 11  # each line passes the limit: a new file after each
    journal.committed([f"r{i}" for i in range(9)])
    assert len(list(tmp_path.iterdir())) == 2  # the current file, and the one holding r9
    journal.committed(["r9"])
    assert [p.name for p in tmp_path.iterdir()] == [journal.path.name]
    journal.close(remove=True)
    assert list(tmp_path.iterdir()) == []
