"""The upstream ids a certificate rests on: for every answer used as evidence, the request id (or batch id) and
the message id the API gave it, so the provider can confirm the calls were made. They are provenance, not
evidence: the certificate id leaves them out and the signature covers them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parity.proof.calls import request_key, result_field
from parity.proof.data import ProofItem


def upstream_ids(result: Any) -> dict[str, str | None] | None:
    """What the API called one answer: {"request_id": the `request-id` header of a sync call or the id of its
    batch, "message_id": the message's id}; None when the run kept no result for that call (a logged answer)."""
    if result is None:
        return None
    ids = {}
    for name in ("request_id", "message_id"):
        value = result_field(result, name)
        ids[name] = value if isinstance(value, str) and value else None
    return ids


def _baseline_key(obs: Mapping[str, Any], item: ProofItem | None, baseline_model: str) -> str | None:
    """The request key of the baseline call the proof made for this prompt (the request as sent, on the baseline)."""
    if obs.get("baseline_request_key"):
        return str(obs["baseline_request_key"])
    return request_key({**item.request, "model": baseline_model}) if item is not None else None


def with_upstream(obs: Mapping[str, Any], calls: Mapping[str, Any], item: ProofItem | None,
                   baseline_model: str) -> dict[str, Any]:
    """A copy of an observation with the upstream id of each answer it rests on (None where none is known:
    a logged baseline answer, or a call result that kept no id)."""
    judge = [upstream_ids(calls.get(o.get("request_key") or "")) for o in (obs.get("judgment") or {}).get("orders", [])
             if not o.get("identical")]
    ids: dict[str, Any] = {
        "baseline": upstream_ids(calls.get(_baseline_key(obs, item, baseline_model) or "")),
        "candidate": upstream_ids(calls.get(obs.get("candidate_request_key") or "")),
    }
    if obs.get("judgment") is not None:
        ids["judge"] = judge
    return {**obs, "upstream_ids": ids}


def upstream_summary(candidates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every upstream id the certificate rests on (first seen first; a batch id once for all its answers), how
    many answers it used, and how many of those have no id at all."""
    request_ids: dict[str, None] = {}
    message_ids: dict[str, None] = {}
    answers = missing = 0
    baselines: set[str] = set()
    for cand in candidates:
        for obs in cand.get("observations", []):
            ids = obs.get("upstream_ids") or {}
            used = [ids.get("candidate"), *ids.get("judge", [])]
            if obs["id"] not in baselines:  # every candidate is compared with the same baseline answer
                baselines.add(obs["id"])
                used.insert(0, ids.get("baseline"))
            for one in used:
                answers += 1
                one = one or {}
                if one.get("request_id"):
                    request_ids.setdefault(one["request_id"], None)
                if one.get("message_id"):
                    message_ids.setdefault(one["message_id"], None)
                missing += not (one.get("request_id") or one.get("message_id"))
    return {"request_ids": list(request_ids), "message_ids": list(message_ids), "answers": answers,
            "without_id": missing}


__all__ = ["upstream_ids", "upstream_summary", "with_upstream"]
