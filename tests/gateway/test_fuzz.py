"""No malformed request gets a 500: hypothesis throws broken bodies, headers, paths and methods at every endpoint of
the gateway (in front of the in-process emulator) and checks each answer is either a success or the API's error
envelope (`{"type": "error", "error": {"type", "message"}}` with a `request-id`), never a 5xx the gateway made,
and that nothing reached the gateway's "bug" handler or broke its background bookkeeping.

Two gateways: one routing the `triage` task (so malformed bodies also go through task identification, routing,
the contract check and deferral), one with a keys file (so garbage credentials meet authentication).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.fingerprint import fingerprint
from parity.policy import Contract, Match, TaskPolicy

from .conftest import BASELINE, CANDIDATE, USER, Harness, certified, policy

MAX_BODY = 64 * 1024
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# ---- the gateways -------------------------------------------------------------------------------------------


class BugCatcher(logging.Handler):
    """Collects every record of the gateway's "this is a bug" paths (an exception that reached a handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def bugs():
    catcher = BugCatcher()
    logger = logging.getLogger("parity")
    logger.addHandler(catcher)
    yield catcher
    logger.removeHandler(catcher)


def _routed_policy():
    routed = policy("route")
    system = "You sort bug reports. Today is 2026-11-24."
    routed.tasks["labels"] = certified(TaskPolicy(
        task="labels", mode="route", baseline_model=BASELINE, candidate_model=CANDIDATE,
        contract=Contract(labels=["bug", "feature"]),
        match=Match(fingerprint=fingerprint({"system": system, "messages": USER})),
    ))
    return routed


@pytest.fixture(scope="module")
def routed(tmp_path_factory, bugs):
    harness = Harness(tmp_path_factory.mktemp("fuzz-routed"), policy=_routed_policy(), max_body_bytes=MAX_BODY,
                      deferral_options={"max_wait_s": 0.0, "poll_interval_s": 0.0})
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, bugs):
    from parity.gateway.keys import KeyStore

    path = tmp_path_factory.mktemp("fuzz-keys")
    store = KeyStore(path / "keys.json")
    secret, _ = store.create("fuzzer", rate_limit_rpm=100_000)
    harness = Harness(path, policy=_routed_policy(), keys_path=str(path / "keys.json"), max_body_bytes=MAX_BODY)
    harness.secret = secret
    yield harness
    harness.close()


# ---- strategies ---------------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
high_bytes = st.binary(max_size=30).map(lambda b: bytes(c | 0x80 if c < 32 or c == 127 else c for c in b))  # obs-text
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=20)

models = st.sampled_from([BASELINE, CANDIDATE, "claude-haiku-4-5-20251001", "claude-unknown-9", ""]) | json_scalars
contents = st.one_of(
    text,
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "bogus"]),
                                    "text": text | json_scalars}), max_size=3),
    json_values,
)
messages = st.one_of(
    st.just(USER),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", ""]) | json_scalars,
                                    "content": contents}), max_size=4),
    json_values,
)
metadata = st.one_of(
    st.fixed_dictionaries({"user_id": st.sampled_from(["task:triage", "task=labels;u:1", "task:nope", ""]) | text}),
    st.fixed_dictionaries({"task": st.sampled_from(["triage", "labels", "unknown"]) | json_scalars}),
    json_values,
)
optional = {
    "system": st.sampled_from(["You sort bug reports. Today is 2026-12-01."]) | text | st.lists(json_values, max_size=3),
    "stream": st.booleans() | json_scalars,
    "metadata": metadata,
    "temperature": json_scalars,
    "tools": st.lists(st.fixed_dictionaries({"name": text, "input_schema": json_values}), max_size=2) | json_values,
    "tool_choice": json_values,
    "stop_sequences": json_values,
    "thinking": json_values,
    "cache_control": json_values,
}
wild_bodies = st.fixed_dictionaries(
    {"model": models, "max_tokens": st.integers(-5, 10**9) | json_scalars, "messages": messages}, optional=optional
)
VALID_EXTRAS = {
    "stream": st.booleans(),
    "system": st.sampled_from(["You sort bug reports. Today is 2026-12-01.", "Be brief."]),
    "metadata": st.sampled_from([{"user_id": "task:triage"}, {"task": "labels"}, {"user_id": "u-1"}]),
    "temperature": st.sampled_from([0, 0.5, 1]),
}


@st.composite
def near_valid_bodies(draw: Any) -> dict[str, Any]:
    """A valid request (often one the policy routes) with at most one field broken, dropped or added."""
    body: dict[str, Any] = {"model": draw(st.sampled_from([BASELINE, BASELINE, "claude-haiku-4-5-20251001"])),
                            "max_tokens": draw(st.sampled_from([1, 50, 200])), "messages": USER}
    body.update(draw(st.fixed_dictionaries({}, optional=VALID_EXTRAS)))
    mutation = draw(st.sampled_from(["none", "none", "replace", "drop", "add", "deep"]))
    if mutation == "replace":
        key = draw(st.sampled_from(sorted(body) + sorted(optional)))
        body[key] = draw(optional.get(key, json_values) | json_values)
    elif mutation == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
    elif mutation == "add":
        body[draw(text)] = draw(json_values)
    elif mutation == "deep":  # parses, but deep enough to break naive recursion (copying, re-encoding)
        value: Any = 1
        as_dict = draw(st.booleans())
        for _ in range(draw(st.sampled_from([150, 400, 700, 990]))):
            value = {"a": value} if as_dict else [value]
        body[draw(st.sampled_from(["metadata", "tool_choice", "messages", "system", "x"]))] = value
    return body


message_bodies = wild_bodies | near_valid_bodies()


def _deep(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


raw_bodies = st.one_of(
    st.binary(max_size=200),
    text.map(lambda s: s.encode()),
    st.builds(_deep, st.integers(1, 3000), st.sampled_from(["list", "dict"])),
    st.sampled_from([b"", b"   ", b"null", b"NaN", b'{"model": Infinity}', b"\xff\xfe{}", b'{"a":1', b"[]", b"{}",
                     b"{" + b'"model":"' + b"x" * (MAX_BODY + 10) + b'"}']),
)
bodies = st.one_of(
    message_bodies.map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    raw_bodies,
)

versions = (st.sampled_from(["2023-06-01", "2026-10-21", "", "garbage", "2023-06-01, 2026-10-21", "1999-01-01"])
            | header_text | high_bytes)
credentials = st.one_of(
    st.fixed_dictionaries({"x-api-key": st.sampled_from(["sk-client", "", " ", "sk-parity-", "sk-parity-x_y"])
                           | header_text | high_bytes}),
    st.fixed_dictionaries({"authorization": st.sampled_from(["Bearer sk-client", "Bearer", "Bearer ", "Basic abc",
                                                             "bearer  x", ""]) | header_text}),
    st.just({}),
)
content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", ""])
parity_headers = st.fixed_dictionaries({}, optional={
    "x-parity-task": st.sampled_from(["triage", "labels", "unknown-task", "", " ", "x" * 500]) | header_text | high_bytes,
    "x-parity-defer": st.sampled_from(["true", "TRUE", " true ", "false", "1", ""]) | header_text,
    "anthropic-beta": st.sampled_from(["", ",", "not-a-beta", "token-counting-2024-11-01"]) | header_text,
})


@st.composite
def headers(draw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {**draw(credentials), **draw(parity_headers)}
    version = draw(st.none() | versions)
    if version is not None:
        out["anthropic-version"] = version
    kind = draw(st.none() | content_types)
    if kind is not None:
        out["content-type"] = kind
    return out


segment = st.sampled_from(["msgbatch_0000", "msgbatch_" + "a" * 300, "..", ".", "%2e%2e", "a b", "claude-haiku-4-5"]) | text
endpoints = st.one_of(
    st.sampled_from([
        ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"), ("POST", "/v1/messages/batches"),
        ("GET", "/v1/messages/batches"), ("GET", "/v1/models"), ("GET", "/v1/messages"), ("PUT", "/v1/messages"),
        ("DELETE", "/v1/models"), ("POST", "/v1/complete"), ("GET", "/v1/parity/deferred"), ("GET", "/v1/parity/drift"),
        ("GET", "/v2/messages"), ("POST", "/"), ("GET", "/v1"), ("GET", "/v1/"), ("PATCH", "/v1/messages/batches"),
    ]),
    st.tuples(st.sampled_from(["GET", "POST", "DELETE"]),
              st.sampled_from(["/v1/messages/batches/{}", "/v1/messages/batches/{}/cancel",
                               "/v1/messages/batches/{}/results", "/v1/models/{}", "/v1/parity/deferred/{}",
                               "/v1/{}", "/{}"]).flatmap(lambda t: segment.map(lambda s: t.format(quote(s, safe=""))))),
)
queries = st.sampled_from(["", "limit=0", "limit=-1", "limit=abc", "limit=100000", "after_id=%00", "before_id=x&after_id=y",
                           "beta=true", "%zz"]) | header_text.map(lambda s: quote(s, safe="=&"))


# ---- the check ----------------------------------------------------------------------------------------------


def _check(harness: Harness, bugs: BugCatcher, method: str, path: str, body: bytes | None, hdrs: dict[str, str],
           query: str = "") -> None:
    seen_bugs = len(bugs.records)
    with harness.http() as http:
        url = path + ("?" + query if query else "")
        request = http.build_request(method, "/", content=body, headers=hdrs)
        raw_path = url.encode("ascii", "strict")
        request.url = request.url.copy_with(raw_path=raw_path)
        response = http.send(request, stream=True)
        try:
            payload = b"".join(response.iter_bytes())
        finally:
            response.close()
    status = response.status_code
    where = f"{method} {url} {hdrs} body={(body or b'')[:200]!r}"
    assert status < 500, f"{status} for {where}: {payload[:300]!r}"  # a healthy upstream: any 5xx is the gateway's
    if status >= 400:
        envelope = json.loads(payload)
        assert envelope["type"] == "error", where
        assert isinstance(envelope["error"]["type"], str) and isinstance(envelope["error"]["message"], str), where
        assert response.headers.get("request-id") or envelope.get("request_id"), where
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        assert b"event: message_stop" in payload or b"event: error" in payload, where
    elif payload:
        if response.headers.get("content-type", "").startswith("application/json"):
            json.loads(payload)
    assert len(bugs.records) == seen_bugs, [r.getMessage() for r in bugs.records[seen_bugs:]]


def _bookkeeping_ok(harness: Harness) -> None:
    assert harness.gateway.recorder.flush()
    assert harness.gateway.recorder.failed == 0
    assert harness.gateway.recorder.ledger.failed == 0


# ---- the properties -----------------------------------------------------------------------------------------


@FUZZ
@given(body=bodies, hdrs=headers())
def test_messages_never_500(routed, bugs, body, hdrs):
    _check(routed, bugs, "POST", "/v1/messages", body, hdrs)


@FUZZ
@given(body=message_bodies, task=st.sampled_from(["triage", "labels", "other"]), defer=st.booleans())
def test_routed_and_deferred_bodies_never_500(routed, bugs, body, task, defer):
    hdrs = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json",
            "x-parity-task": task}
    if defer:
        hdrs["x-parity-defer"] = "true"
    _check(routed, bugs, "POST", "/v1/messages", json.dumps(body).encode(), hdrs)


@FUZZ
@given(endpoint=endpoints, body=st.none() | bodies, hdrs=headers(), query=queries)
def test_every_endpoint_never_500(routed, bugs, endpoint, body, hdrs, query):
    method, path = endpoint
    _check(routed, bugs, method, path, body if method != "GET" else None, hdrs, query)


@settings(FUZZ, max_examples=120)
@given(endpoint=endpoints, body=st.none() | bodies, hdrs=headers())
def test_gateway_keys_never_500(keyed, bugs, endpoint, body, hdrs):
    method, path = endpoint
    _check(keyed, bugs, method, path, body if method != "GET" else None, hdrs)


@settings(FUZZ, max_examples=100)
@given(body=message_bodies, hdrs=headers())
def test_authenticated_requests_never_500(keyed, bugs, body, hdrs):
    hdrs = {k: v for k, v in hdrs.items() if k not in ("x-api-key", "authorization")}
    hdrs["x-api-key"] = keyed.secret
    _check(keyed, bugs, "POST", "/v1/messages", json.dumps(body).encode(), hdrs)


@pytest.mark.parametrize("depth", [127, 400, 700, 850, 990])
@pytest.mark.parametrize("route", ["triage", "other", "defer"])
def test_deep_bodies_that_parse_are_refused_or_served_never_500(routed, bugs, depth, route):
    """Deep enough to parse, deep enough to break naive recursion (copying a routed body, re-encoding it)."""
    deep = '{"a":' * (depth - 1) + "1" + "}" * (depth - 1)
    body = json.dumps({"model": BASELINE, "max_tokens": 50, "messages": USER, "tool_choice": "@"}).replace('"@"', deep)
    hdrs = {"x-api-key": "k", "anthropic-version": "2023-06-01", "x-parity-task": route}
    if route == "defer":
        hdrs["x-parity-defer"] = "true"
    _check(routed, bugs, "POST", "/v1/messages", body.encode(), hdrs)


def test_bookkeeping_survived_the_fuzzing(routed, keyed):
    """Runs after the properties above (file order): every malformed exchange was recorded without a failure."""
    _bookkeeping_ok(routed)
    _bookkeeping_ok(keyed)
