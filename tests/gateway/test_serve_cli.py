"""`parity serve --upstream emulator --port N` as a user runs it: a subprocess, the SDK by base_url, and the
ledger written by default (SQLite in WAL mode, `parity-ledger.db` in the working directory)."""

from __future__ import annotations

import signal

import anthropic

from parity.ledger.reader import read_rows

from servers import start_serve


def test_parity_serve_answers_the_sdk_and_keeps_a_ledger_by_default(tmp_path):
    process, base_url = start_serve(["--upstream", "emulator"], cwd=tmp_path, ready_path="/metrics")
    try:
        with anthropic.Anthropic(base_url=base_url, api_key="sk-any", max_retries=0) as client:
            message = client.messages.create(model="claude-haiku-4-5", max_tokens=50,
                                             messages=[{"role": "user", "content": "Say hi"}])
            assert message.type == "message" and message.usage.output_tokens >= 1
            assert client.messages.count_tokens(model="claude-haiku-4-5",
                                                messages=[{"role": "user", "content": "Say hi"}]).input_tokens > 0
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert "Parity gateway" in output and "ledger: parity-ledger.db" in output
    rows = list(read_rows(str(tmp_path / "parity-ledger.db")))
    assert [r.route for r in rows if r.exchange.model_served] == ["passthrough"]
    assert rows[0].cost_usd is not None and rows[0].cost_usd > 0
