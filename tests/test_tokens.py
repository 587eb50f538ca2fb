"""Token counting: count_tokens through the real SDK, the SQLite cache, the labelled offline estimate, `parity count`."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest
from typer.testing import CliRunner

import parity
from parity.cli.base import app
from parity.emulator.service import Emulator
from parity.prompt import count_request
from parity.errors import InputError, ParityError
from parity.exchange import read_jsonl
from parity.tokens import ESTIMATE_LABEL, TokenCounter, count_params, recount, request_digest, sample_lines
from parity.wrap import flush

MODEL = "claude-haiku-4-5"


class Counting(httpx2.BaseTransport):
    """The emulator's in-process transport, counting the requests that reach it."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        return self.inner.handle_request(request)


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture
def api(emulator: Emulator) -> Counting:
    return Counting(emulator.transport())


@pytest.fixture
def client(emulator: Emulator, api: Counting) -> anthropic.Anthropic:
    return emulator.client(http_client=httpx2.Client(transport=api))


REQUEST = {"model": MODEL, "max_tokens": 100, "stream": True, "metadata": {"user_id": "u"}, "system": "Be brief.",
           "messages": [{"role": "user", "content": "Hello there"}]}


def test_online_count_strips_non_count_fields_and_caches(client, api, tmp_path):
    cache = tmp_path / "tokens.sqlite"
    with TokenCounter(client, cache_path=cache) as counter:
        first = counter.count(REQUEST)  # max_tokens, stream, metadata would be a 400 from count_tokens
        again = counter.count(dict(REQUEST))
    assert first.estimate is False and first.cached is False and first.label == "count_tokens"
    assert first.input_tokens == count_request({k: REQUEST[k] for k in ("model", "system", "messages")})
    assert again.input_tokens == first.input_tokens and again.cached is True
    assert api.paths == ["/v1/messages/count_tokens"]
    # the cache survives the process: a new counter reads it without calling the API
    with TokenCounter(client, cache_path=cache) as counter:
        assert counter.count(REQUEST).cached is True
    assert len(api.paths) == 1
    # a different model or different content is a different key
    with TokenCounter(client, cache_path=cache) as counter:
        assert counter.count(REQUEST, model="claude-sonnet-4-5").cached is False
        assert counter.count({**REQUEST, "system": "Be long."}).cached is False
    assert len(api.paths) == 3


def test_counter_from_base_url_and_key(monkeypatch):
    monkeypatch.setattr(anthropic.Anthropic, "_calculate_retry_timeout", lambda *a, **k: 0.0)
    counter = TokenCounter(base_url="http://127.0.0.1:9", api_key="sk-emulator", cache_path=None)
    assert counter.online and counter.endpoint == "http://127.0.0.1:9"
    with pytest.raises(ParityError, match="could not reach http://127.0.0.1:9"):
        counter.count(REQUEST)  # nothing listens there: the error says what to do


def test_key_order_is_part_of_the_cache_key():
    a = count_params({"messages": [], "tools": [{"name": "t", "input_schema": {"a": 1, "b": 2}}]})
    b = count_params({"messages": [], "tools": [{"name": "t", "input_schema": {"b": 2, "a": 1}}]})
    assert request_digest(a) != request_digest(b)
    assert request_digest(a) == request_digest(count_params({"max_tokens": 5, **a}))


def test_no_cache_path_always_asks(client, api):
    counter = TokenCounter(client, cache_path=None)
    counter.count(REQUEST)
    assert counter.count(REQUEST).cached is False and len(api.paths) == 2


def test_errors_say_what_to_do(client):
    counter = TokenCounter(client, cache_path=None)
    with pytest.raises(ParityError, match="HTTP 404"):
        counter.count(REQUEST, model="claude-nope-1")
    with pytest.raises(InputError, match="no model"):
        counter.count({"messages": []})
    with pytest.raises(InputError, match="no 'messages' list"):
        counter.count({"model": MODEL})


def test_offline_estimate_is_labelled(tmp_path):
    counter = TokenCounter(cache_path=tmp_path / "never.sqlite")
    assert not counter.online
    result = counter.count(REQUEST)
    longer = counter.count({**REQUEST, "system": "Be brief. " * 50})
    assert result.estimate is True and result.cached is False and result.label == ESTIMATE_LABEL
    assert 0 < result.input_tokens < longer.input_tokens
    assert result.input_tokens == count_request({k: REQUEST[k] for k in ("model", "system", "messages")})
    assert not (tmp_path / "never.sqlite").exists()  # estimates are never cached


def _logged(client, tmp_path, n=12):
    """Exchange JSONL written by parity.wrap from real calls to the emulator, plus one bad line."""
    path = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=path)
    for k in range(n):
        wrapped.messages.create(model=MODEL, max_tokens=20, system="You label tickets. " * (k + 1),
                                messages=[{"role": "user", "content": f"ticket {k}: my card was charged twice"}])
    flush(wrapped)
    with open(path, "a") as out:
        out.write("not json\n")
    return path


def test_recount_sample_compares_whole_prompt_with_logged_usage(client, tmp_path):
    path = _logged(client, tmp_path)
    picked = sample_lines(read_jsonl(path), 5, seed=1)
    assert len(picked) == 5 and [line for line, _ in picked] == sorted(line for line, _ in picked)
    assert picked != sample_lines(read_jsonl(path), 5, seed=2)
    assert len(sample_lines(read_jsonl(path), 100)) == 12  # the bad line is skipped
    rows = recount(picked, TokenCounter(client, cache_path=None))
    # the emulator's count_tokens agrees with the usage it billed: no difference
    assert all(r.difference == 0 and r.logged_input_tokens == r.input_tokens > 0 for r in rows)


def test_cli_count_request_online_and_logs(client, api, tmp_path, monkeypatch):
    log = _logged(client, tmp_path, 8)
    monkeypatch.setattr("parity.cli.count.make_counter",
                        lambda base_url, offline, no_cache: TokenCounter(client, cache_path=tmp_path / "c.sqlite"))
    req = tmp_path / "req.json"
    req.write_text(json.dumps(REQUEST, indent=2))
    runner = CliRunner()
    out = runner.invoke(app, ["count", str(req), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["estimate"] is False and data["source"] == "count_tokens at http://emulator.local"
    out = runner.invoke(app, ["count", str(log), "--json", "--sample", "4"])
    data = json.loads(out.stdout)
    assert len(data["results"]) == 4 and data["summary"]["relative_difference"] == 0
    out = runner.invoke(app, ["count", str(log)])
    assert out.exit_code == 0 and "difference" in out.stdout and "estimate" not in out.stdout


def test_cli_count_offline_prints_the_label(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    text = tmp_path / "prompt.txt"
    text.write_text("Summarise the attached report in three bullet points.")
    out = CliRunner().invoke(app, ["count", str(text), "--model", MODEL])
    assert out.exit_code == 0, out.output
    assert "estimate (offline approximation, not Claude's tokenizer)" in " ".join(out.stdout.split())
    out = CliRunner().invoke(app, ["count", str(text)])
    assert out.exit_code != 0
