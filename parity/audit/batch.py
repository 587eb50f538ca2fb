"""Batch lever: traffic nobody waits on, which the Message Batches API would bill at 50 %.

Each priced request is put in one *slice* while streaming:

* ``batch``: already sent through the Batches API (or usage.service_tier "batch"): nothing to gain;
* ``live``: someone is waiting: streamed (`stream: true`), fast mode (not offered on batches), or tagged
  interactive (`mode=interactive|chat|realtime`...);
* ``job``: a job says so: a tag key or value (`job=nightly-digest`, `pipeline=etl`, `source=cron`), a job
  runner's user agent in the tags (Airflow, Celery, cron, Kubernetes jobs, CI runners...), or the request's
  `metadata` (e.g. `user_id: "cron-backfill"`);
* ``ns00``..``ns23``: not streamed, no signal either way, by UTC hour of day. At the end a family whose
  unsignalled traffic comes ≥ 80 % in night hours (00-06 UTC by default), in a log spanning at least 20
  hours of its traffic, is a night-time burst: those hours are batchable too (reason ``night_burst``).

Cost now vs batched is the same token vectors priced with the batch flag (50 % off every category,
stacking with cache prices), so the saving is exact for the slice, not an estimate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from parity.exchange import Exchange

__all__ = [
    "BATCH_SLICE",
    "JOB_SLICE",
    "LIVE_SLICE",
    "NightPolicy",
    "batchable_slices",
    "classify",
    "night_share",
]

BATCH_SLICE = "batch"
LIVE_SLICE = "live"
JOB_SLICE = "job"
NS_SLICES = tuple(f"ns{h:02d}" for h in range(24))

_JOB_WORDS = re.compile(
    r"(?i)(?:^|[^a-z])(batch|batches|jobs?|nightly|daily|weekly|cron(?:job)?|backfill|offline|etl|pipeline|scheduled?|"
    r"scheduler|bulk|worker|queue|async|digest|airflow|dagster|prefect|celery|sidekiq|luigi|argo|eval|evals)(?:$|[^a-z])"
)
_JOB_AGENTS = re.compile(
    r"(?i)(airflow|celery|cron|dagster|prefect|luigi|argo|kube|k8s|github-actions|gitlab-runner|jenkins|buildkite|"
    r"sidekiq|\brq/|batch|worker|job|scheduler|lambda|cloud-?functions|step-?functions)"
)
_LIVE_WORDS = re.compile(r"(?i)^(interactive|chat|realtime|real-time|live|online|user|ui|frontend|web|sync)$")
_UA_KEYS = frozenset({"user_agent", "user-agent", "useragent", "ua", "http.user_agent", "http.request.header.user-agent",
                      "user_agent.original"})
_INTERACTIVE_KEYS = frozenset({"mode", "interactive", "latency", "channel", "surface"})
_memo: dict[tuple[tuple[str, str], ...], str | None] = {}
_MEMO_MAX = 8192


def classify(exchange: Exchange, hour: int) -> tuple[str, str | None]:
    """(slice, reason) of one priced request; reason names the job signal for the ``job`` slice."""
    usage = exchange.usage or {}
    if exchange.batch or usage.get("service_tier") == "batch":
        return BATCH_SLICE, None
    request = exchange.request
    if request.get("stream") is True or request.get("speed") == "fast" or usage.get("speed") == "fast":
        return LIVE_SLICE, None
    tags = exchange.tags
    if tags:
        items = tuple(tags.items())
        verdict = _memo.get(items, "?")
        if verdict == "?":
            verdict = _tag_signal(tags)
            if len(_memo) >= _MEMO_MAX:
                _memo.clear()
            _memo[items] = verdict
        if verdict == "live":
            return LIVE_SLICE, None
        if verdict is not None:
            return JOB_SLICE, verdict
    metadata = request.get("metadata")
    if isinstance(metadata, Mapping):
        for value in metadata.values():
            if isinstance(value, str) and _JOB_WORDS.search(value):
                return JOB_SLICE, "metadata"
    return NS_SLICES[hour], None


def _tag_signal(tags: Mapping[str, str]) -> str | None:
    """'live', 'user_agent', 'tag' or None for a request's tags."""
    found = None
    for key, value in tags.items():
        lowered = key.lower()
        if lowered in _UA_KEYS:
            if _JOB_AGENTS.search(value):
                found = found or "user_agent"
            continue
        if lowered in _INTERACTIVE_KEYS and _LIVE_WORDS.match(value.strip()):
            return "live"
        if lowered == "interactive" and value.strip().lower() in ("true", "1", "yes"):
            return "live"
        if lowered in ("task", "family"):  # a task's name says what, not how it is run
            continue
        if _JOB_WORDS.search(key) or _JOB_WORDS.search(value):
            found = found or "tag"
    return found


@dataclass(frozen=True)
class NightPolicy:
    """Which UTC hours count as night, and how concentrated unsignalled traffic must be to call it a job."""

    start_hour: int = 0
    end_hour: int = 6  # exclusive
    min_share: float = 0.8
    min_requests: int = 20
    min_span_hours: float = 20.0  # a log covering only one night says nothing about night-time bursts

    def hours(self) -> tuple[int, ...]:
        if self.start_hour <= self.end_hour:
            return tuple(range(self.start_hour, self.end_hour))
        return tuple(range(self.start_hour, 24)) + tuple(range(0, self.end_hour))


def night_share(requests_by_slice: Mapping[str, int], policy: NightPolicy) -> tuple[float, int]:
    """(share of unsignalled non-streamed requests that came at night, how many unsignalled there were)."""
    total = sum(requests_by_slice.get(s, 0) for s in NS_SLICES)
    if not total:
        return 0.0, 0
    night = sum(requests_by_slice.get(NS_SLICES[h], 0) for h in policy.hours())
    return night / total, total


def batchable_slices(requests_by_slice: Mapping[str, int], policy: NightPolicy, span_hours: float = 24.0
                     ) -> dict[str, str]:
    """Slices of one family that the Batches API could take, each with its reason.

    `span_hours`: how long the family's traffic spans in the log; night bursts need at least a day of it.
    """
    out = {JOB_SLICE: "job"} if requests_by_slice.get(JOB_SLICE) else {}
    share, total = night_share(requests_by_slice, policy)
    if total >= policy.min_requests and share >= policy.min_share and span_hours >= policy.min_span_hours:
        for h in policy.hours():
            if requests_by_slice.get(NS_SLICES[h]):
                out[NS_SLICES[h]] = "night_burst"
    return out


def is_ns(slice_name: str) -> bool:
    return slice_name.startswith("ns")


def slices_of(names: Iterable[str]) -> list[str]:
    return sorted(set(names))


FIX = (
    "nobody waits on these responses: send them through the Message Batches API "
    "(client.messages.batches.create; results within 24 h, usually much sooner) to pay 50 % of every token "
    "category, cache reads and writes included"
)
