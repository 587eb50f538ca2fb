"""`parity audit --plan`: the audit's findings turned into a policy file the gateway acts on.

Why: the audit finds the money, but a finding nobody acts on saves nothing. The plan sorts each family's
findings by what acting on them does to the prompt the model reads:

* **apply** (`TaskPolicy.cache_plan`): canonical key order in tool JSON and `tool_use` inputs, a stable tool
  order, a breakpoint at the end of the stable prefix and the TTL the gap analysis chose. The model reads the same
  thing, so the gateway applies these to the family's requests with no proof (`parity.gateway.cachefix`);
* **proposals**: moving a timestamp or id out of the cached prefix, pinning one model, sending one tool set, ...
  These change the prompt, so they are written down with the exact change and never applied; the user makes them
  in code, or proves them with `parity prove` like any candidate. A family whose prefix holds a volatile value
  gets no cache fix applied at all: until the value moves, a breakpoint would only pay for writes;
* **notes**: deferral for batchable families (clients opt in with `x-parity-defer: true`) and right-size
  candidates as `parity prove` commands.

The plan is built from the audit report's JSON alone (docs/audit-json.md), so it can be rebuilt from a saved
report. Families are named the way `parity serve` identifies tasks: a tag by its name, else by fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from parity.audit.cost import usd
from parity.policy import CachePlan, Match, PlanNote, Policy, Proposal, TaskPolicy, load_policy, save_policy

__all__ = ["APPLY_CAUSES", "PROPOSE_CAUSES", "build_plan", "describe_plan", "write_plan"]

APPLY_CAUSES = ("unsorted_json_keys", "tool_order_changed", "no_breakpoint", "ttl_expired")
"""Cache causes whose fix leaves what the model reads unchanged: the gateway applies them."""

PROPOSE_CAUSES = ("volatile_timestamp", "volatile_uuid", "model_switched", "tool_set_varies", "image_added",
                  "below_min_cacheable")
"""Cache causes whose fix changes the prompt (or needs more prompt): proposed, never applied."""

_VOLATILE = ("volatile_timestamp", "volatile_uuid")

_CHANGE = {
    "volatile_timestamp": "move the date/time {example} out of {where} into the last user message (or round it to "
                          "the day), so the prefix before it is byte-stable",
    "volatile_uuid": "move the id {example} out of {where} (into `metadata` or the last user message)",
    "model_switched": "pin one model for this family ({example}); route whole conversations, not single turns",
    "tool_set_varies": "send every request of this family the same full tool list ({example}); enforce permissions "
                       "where the tool runs, or put the varying tools last behind a breakpoint on the last shared tool",
    "image_added": "keep images out of the cached turns ({example}); put them after the last breakpoint",
    "below_min_cacheable": "grow the stable prefix before the breakpoint at {where} past the model's minimum "
                           "(move stable instructions or examples before it), or drop the cache_control",
    "unsorted_json_keys": "serialise the JSON inside {where} with sorted keys (json.dumps(..., sort_keys=True)); the "
                          "gateway never rewrites message or system text",
}


def build_plan(report: Mapping[str, Any]) -> Policy:
    """The plan for an audit report (`AuditReport.to_json()`): one observe-mode task per family with something to do."""
    families = {row["family"]: row for row in report.get("by_family", [])}
    cache_rows = {row["family"]: row for row in report.get("cache", {}).get("families", [])}
    findings: dict[str, list[Mapping[str, Any]]] = {}
    for finding in report.get("findings", []):
        findings.setdefault(finding["family"], []).append(finding)
    batch = {row["family"]: row for row in report.get("batch", {}).get("families", [])}
    rightsize = {row["family"]: row for row in report.get("rightsize", {}).get("candidates", [])}
    policy = Policy()
    for fid, fam in families.items():
        if fam.get("kind") not in ("tag", "fingerprint"):
            continue  # "(other)": templates beyond the family cap cannot be recognised one by one
        entry = _family_entry(fid, fam, cache_rows.get(fid, {}), findings.get(fid, []), batch.get(fid),
                              rightsize.get(fid))
        if entry is not None:
            policy.tasks[fid] = entry
    return policy


def _family_entry(fid: str, fam: Mapping[str, Any], cache_row: Mapping[str, Any], found: list[Mapping[str, Any]],
                  batch: Mapping[str, Any] | None, rightsize: Mapping[str, Any] | None) -> TaskPolicy | None:
    models = fam.get("models") or {}
    model = max(models, key=lambda m: models[m]) if models else ""
    cache = [f for f in found if f.get("lever") == "cache"]
    volatile = [f for f in cache if f["cause"] in _VOLATILE and _in_prefix(f.get("block_path"))]
    proposals = [_proposal(f, model) for f in cache if f["cause"] in PROPOSE_CAUSES
                 or (f["cause"] == "unsorted_json_keys" and _in_text(f.get("block_path")))]
    plan = None if volatile else _cache_plan(cache, cache_row)
    if volatile:
        held = sum((Decimal(f["saving_usd"]) for f in cache if f["cause"] in APPLY_CAUSES), Decimal(0))
        if held > 0:
            for p in proposals:
                if p.cause in _VOLATILE:  # the cache saving waits on this change: it is this proposal's to claim
                    p.why += (" Until it moves, no cache fix is applied to this family (a breakpoint would only "
                              "pay for writes); once it has, `parity audit --plan` adds them.")
                    p.estimated_saving_usd = usd(max(held, Decimal(p.estimated_saving_usd)))
    notes = []
    if batch is not None:
        notes.append(PlanNote(
            action="defer",
            how='send these requests with the header "x-parity-defer: true": the gateway sends them as Message '
                "Batches at 50% off and returns a handle to poll (/v1/parity/deferred)",
            why=f"{batch['requests']} requests nobody waits on ({_reasons(batch.get('reasons'))})",
            estimated_saving_usd=str(batch["saving_usd"])))
    if rightsize is not None:
        candidate = rightsize["candidate_model"]
        how = f"parity prove --task {fid} --baseline {rightsize['model']} --candidate {candidate}"
        if fam.get("kind") == "fingerprint":
            how += f" --fingerprint {fid}"
        notes.append(PlanNote(
            action="prove", how=how,
            why=(f"outputs look simple for {rightsize['model']} ({'; '.join(rightsize.get('reasons', []))}); a "
                 "hypothesis until the proof passes" + (f". {rightsize['note']}" if rightsize.get("note") else "")),
            estimated_saving_usd=str(rightsize["saving_if_proven_usd"])))
    if plan is None and not proposals and not notes:
        return None
    match = Match(fingerprint=fid) if fam.get("kind") == "fingerprint" else Match()
    return TaskPolicy(task=fid, mode="observe", baseline_model=model, match=match, cache_plan=plan,
                      proposals=proposals, notes=notes)


def _cache_plan(cache: list[Mapping[str, Any]], row: Mapping[str, Any]) -> CachePlan | None:
    fixes: list[str] = []
    why: list[str] = []
    saving = Decimal(0)
    bp = row.get("breakpoint") or {}
    for f in cache:
        cause, path = f["cause"], f.get("block_path") or ""
        if cause not in APPLY_CAUSES:
            continue
        if cause == "unsorted_json_keys":
            if _in_text(path):
                continue  # JSON inside prose is the user's text: a proposal
            fixes.append("tool_use_inputs" if path.startswith("messages") else "json_keys")
            why.append(f"the same JSON arrives with its keys in another order at {path}: sorted keys")
        elif cause == "tool_order_changed":
            fixes.append("tool_order")
            why.append("the same tools arrive in another order: sorted by name")
        elif cause in ("no_breakpoint", "ttl_expired"):
            fixes.append("breakpoint")
            if cause == "no_breakpoint":
                why.append(f"a ~{bp.get('prefix_tokens_estimate', 0):,}-token prefix repeats but is not cached: a "
                           f"breakpoint at {f.get('block_path') or bp.get('suggested_path')}")
        saving += Decimal(str(f.get("saving_usd", "0")))
    ttl_row = row.get("ttl") or {}
    ttl = "1h" if ttl_row.get("recommended") == "1h" else "5m"
    if ttl == "1h":
        why.append(f"TTL 1h from the gaps between requests: {ttl_row.get('arithmetic', '')}".rstrip(": "))
    if not fixes:
        return None
    if "breakpoint" not in fixes and not bp.get("requests_with_breakpoint"):
        fixes.append("breakpoint")  # the other fixes make the prefix stable; without a breakpoint nothing reads it
    return CachePlan(fixes=sorted(set(fixes), key=fixes.index), ttl=ttl, breakpoint=bp.get("suggested_path"),
                     why="; ".join(why) + ". None of these changes what the model reads.",
                     estimated_saving_usd=usd(saving))


def _proposal(f: Mapping[str, Any], model: str) -> Proposal:
    cause = f["cause"]
    where = f.get("block_path") or ""
    if f.get("offset") is not None:
        where = f"{where} offset {f['offset']}"
    example = (f.get("detail") or {}).get("example") or ""
    change = _CHANGE.get(cause, "{where}").format(where=where or "the prefix", example=example or model).strip()
    return Proposal(cause=cause, change=change, where=where or None, why=f.get("fix") or "",
                    estimated_saving_usd=str(f.get("saving_usd", "0")))


def _in_prefix(path: str | None) -> bool:
    return bool(path) and (path.startswith("tools") or path.startswith("system"))  # type: ignore[union-attr]


def _in_text(path: str | None) -> bool:
    return bool(path) and (path.startswith("system") or path.endswith(".text"))  # type: ignore[union-attr]


def _reasons(reasons: Mapping[str, int] | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (reasons or {}).items()) or "job traffic"


def write_plan(plan: Policy, path: str | Path) -> Policy:
    """Write `plan` into the policy file at `path`, keeping its other tasks and each task's routing fields (a plan
    entry adds its cache plan, proposals and notes to a task `parity prove` already wrote)."""
    policy = load_policy(path) if Path(path).exists() else Policy()
    for name, entry in plan.tasks.items():
        mine = policy.tasks.get(name)
        if mine is None:
            policy.tasks[name] = entry
        else:
            mine.cache_plan, mine.proposals, mine.notes = entry.cache_plan, entry.proposals, entry.notes
    save_policy(policy, path)
    return policy


def describe_plan(plan: Policy, labels: Mapping[str, str] | None = None) -> Iterable[str]:
    """Plain lines saying what each entry does and why, with its estimated saving (for the terminal)."""
    labels = labels or {}
    for name, task in sorted(plan.tasks.items()):
        yield f"{name}  {labels.get(name, '')}".rstrip()
        if task.cache_plan is not None:
            cp = task.cache_plan
            yield (f"  apply  {', '.join(cp.fixes)} (TTL {cp.ttl}), about ${cp.estimated_saving_usd}: {cp.why}")
        for p in task.proposals:
            yield f"  propose  [{p.cause}] {p.change} (about ${p.estimated_saving_usd}; not applied)"
        for n in task.notes:
            yield f"  {n.action}  {n.how} (about ${n.estimated_saving_usd}): {n.why}"
