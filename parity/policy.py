"""Policy: what the gateway does per task, derived only from certificates.

A policy file is JSON: {"version": 1, "tasks": {name: TaskPolicy}}. `parity prove` writes entries; `parity serve`
reads them. A routed request is rewritten with `apply_prompt`: the candidate model, the tuned system prompt, and the
tuned demonstrations as leading user/assistant turns.

`parity audit --plan` adds, per template family, a `cache_plan` (cache fixes the gateway applies because they leave
what the model reads unchanged), `proposals` (prompt changes, never applied) and `notes` (deferral, `prove`
commands) to observe-mode entries; files without them read as before.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from parity.files import write_atomic
from parity.errors import InputError

Mode = Literal["route", "shadow", "observe"]
MODES = ("route", "shadow", "observe")


@dataclass
class Demo:
    input: str
    output: str


@dataclass
class TunedPrompt:
    system: str | None = None
    demos: list[Demo] = field(default_factory=list)


@dataclass
class Contract:
    """The output contract checked on every routed response."""

    json_schema: dict[str, Any] | None = None
    labels: list[str] | None = None
    regex: str | None = None
    required_fields: list[str] = field(default_factory=list)
    min_chars: int = 1
    max_chars: int | None = None
    refusal: Literal["fallback", "pass_through"] = "pass_through"


@dataclass
class Match:
    """How a request is recognised as this task: a header value, a metadata key's value, or a template fingerprint."""

    header: str | None = None
    metadata_key: str | None = None
    fingerprint: str | None = None


@dataclass
class CertificateRef:
    id: str
    path: str | None = None
    verdict: str = "switch"


CACHE_FIXES = ("json_keys", "tool_use_inputs", "tool_order", "breakpoint")
"""Cache fixes the gateway may apply (`CachePlan.fixes`): none changes what the model reads."""

CACHE_FIX_TAG = "parity.cache_fix"
"""Exchange tag in which the gateway records the cache fixes it applied to a request (comma-separated, e.g.
"tool_order,breakpoint"); `parity savings` reads it back from the ledger."""


@dataclass
class CachePlan:
    """Cache fixes `parity audit --plan` chose for one family; the gateway applies them (mode "apply").

    Why here: these leave what the model reads unchanged (key order, tool order, a breakpoint and its TTL), so they
    need no proof. `why` and `estimated_saving_usd` are for the person reading the file."""

    mode: Literal["apply"] = "apply"
    fixes: list[str] = field(default_factory=list)
    ttl: Literal["5m", "1h"] = "5m"
    breakpoint: str | None = None
    why: str = ""
    estimated_saving_usd: str = "0"


@dataclass
class Proposal:
    """A fix that changes the prompt: written down with the exact change, never applied by the gateway."""

    cause: str
    change: str
    where: str | None = None
    why: str = ""
    estimated_saving_usd: str = "0"


@dataclass
class PlanNote:
    """A plan entry the gateway does not act on by itself: deferral (clients opt in) or a right-size proof."""

    action: str  # "defer" | "prove"
    how: str
    why: str = ""
    estimated_saving_usd: str = "0"


@dataclass
class TaskPolicy:
    task: str
    mode: Mode
    baseline_model: str
    candidate_model: str | None = None
    prompt: TunedPrompt = field(default_factory=TunedPrompt)
    contract: Contract = field(default_factory=Contract)
    match: Match = field(default_factory=Match)
    margin: float | None = None
    alpha: float | None = None
    shadow_rate: float = 0.02
    cache_hygiene: bool = False
    certificate: CertificateRef | None = None
    cache_plan: CachePlan | None = None
    proposals: list[Proposal] = field(default_factory=list)
    notes: list[PlanNote] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("task")
        for name in ("cache_plan", "proposals", "notes"):  # written only when a plan set them: older files stay as they were
            if not data[name]:
                data.pop(name)
        return data


@dataclass
class Policy:
    tasks: dict[str, TaskPolicy] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "tasks": {name: t.to_dict() for name, t in sorted(self.tasks.items())}}


def apply_prompt(request: dict[str, Any], policy: TaskPolicy) -> dict[str, Any]:
    """The request as the candidate should see it: model, tuned system prompt, demonstrations first."""
    if policy.candidate_model is None:
        raise ValueError(f"task {policy.task!r} has no candidate model to route to")
    routed = copy.deepcopy(request)
    routed["model"] = policy.candidate_model
    if policy.prompt.system is not None:
        routed["system"] = policy.prompt.system
    if policy.prompt.demos:
        turns: list[dict[str, Any]] = []
        for demo in policy.prompt.demos:
            turns.append({"role": "user", "content": demo.input})
            turns.append({"role": "assistant", "content": demo.output})
        routed["messages"] = turns + list(routed.get("messages", []))
    return routed


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, file: str) -> Any:
    if key not in data:
        raise InputError("is required", file=file, field=f"{where}.{key}")
    value = data[key]
    if not isinstance(value, kind):
        raise InputError(f"must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}", file=file, field=f"{where}.{key}")
    return value


def _task_from_dict(name: str, data: Any, file: str) -> TaskPolicy:
    where = f"tasks.{name}"
    if not isinstance(data, dict):
        raise InputError("must be an object", file=file, field=where)
    mode = _require(data, "mode", str, where, file)
    if mode not in MODES:
        raise InputError(f"must be one of {', '.join(MODES)}; got {mode!r}", file=file, field=f"{where}.mode")
    baseline = _require(data, "baseline_model", str, where, file)
    candidate = data.get("candidate_model")
    if mode in ("route", "shadow") and not isinstance(candidate, str):
        raise InputError(f"is required when mode is {mode!r}", file=file, field=f"{where}.candidate_model")
    prompt_raw = data.get("prompt") or {}
    demos_raw = prompt_raw.get("demos") or []
    demos = []
    for i, d in enumerate(demos_raw):
        if not isinstance(d, dict) or not isinstance(d.get("input"), str) or not isinstance(d.get("output"), str):
            raise InputError("each demo needs string 'input' and 'output'", file=file, field=f"{where}.prompt.demos.{i}")
        demos.append(Demo(d["input"], d["output"]))
    contract_raw = data.get("contract") or {}
    known = set(Contract.__dataclass_fields__)
    unknown = set(contract_raw) - known
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}; allowed: {sorted(known)}", file=file, field=f"{where}.contract")
    contract = Contract(**contract_raw)
    if contract.refusal not in ("fallback", "pass_through"):
        raise InputError("must be 'fallback' or 'pass_through'", file=file, field=f"{where}.contract.refusal")
    match = Match(**{k: v for k, v in (data.get("match") or {}).items() if k in Match.__dataclass_fields__})
    cert_raw = data.get("certificate")
    cert = CertificateRef(**cert_raw) if isinstance(cert_raw, dict) else None
    cache_plan, proposals, notes = _plan_parts(data, where, file)
    shadow_rate = data.get("shadow_rate", 0.02)
    if not isinstance(shadow_rate, (int, float)) or not 0 <= shadow_rate <= 1:
        raise InputError("must be a number between 0 and 1", file=file, field=f"{where}.shadow_rate")
    return TaskPolicy(
        task=name,
        mode=mode,
        baseline_model=baseline,
        candidate_model=candidate,
        prompt=TunedPrompt(system=prompt_raw.get("system"), demos=demos),
        contract=contract,
        match=match,
        margin=data.get("margin"),
        alpha=data.get("alpha"),
        shadow_rate=float(shadow_rate),
        cache_hygiene=bool(data.get("cache_hygiene", False)),
        certificate=cert,
        cache_plan=cache_plan,
        proposals=proposals,
        notes=notes,
    )


def _plan_parts(data: dict[str, Any], where: str, file: str) -> tuple[CachePlan | None, list[Proposal], list[PlanNote]]:
    """The entries `parity audit --plan` adds to a task (all optional)."""
    raw = data.get("cache_plan")
    plan = None
    if raw is not None:
        if not isinstance(raw, dict):
            raise InputError("must be an object", file=file, field=f"{where}.cache_plan")
        unknown = set(raw) - set(CachePlan.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown keys {sorted(unknown)}", file=file, field=f"{where}.cache_plan")
        plan = CachePlan(**raw)
        if plan.mode != "apply":
            raise InputError("must be 'apply'", file=file, field=f"{where}.cache_plan.mode")
        bad = [f for f in plan.fixes if f not in CACHE_FIXES]
        if bad:
            raise InputError(f"unknown fixes {bad}; allowed: {list(CACHE_FIXES)}", file=file,
                             field=f"{where}.cache_plan.fixes")
        if plan.ttl not in ("5m", "1h"):
            raise InputError("must be '5m' or '1h'", file=file, field=f"{where}.cache_plan.ttl")
    proposals, notes = [], []
    for key, kind, out in (("proposals", Proposal, proposals), ("notes", PlanNote, notes)):
        items = data.get(key) or []
        if not isinstance(items, list):
            raise InputError("must be a list", file=file, field=f"{where}.{key}")
        for i, item in enumerate(items):
            try:
                out.append(kind(**item))
            except TypeError:
                raise InputError(f"expected the fields of {kind.__name__}", file=file,
                                 field=f"{where}.{key}.{i}") from None
    return plan, proposals, notes  # type: ignore[return-value]


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; errors name the file and the field."""
    file = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError("no such policy file; `parity prove` writes one", file=file) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=file, line=exc.lineno) from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise InputError("expected an object with \"version\": 1", file=file, field="version")
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        raise InputError("must be an object of task name to task policy", file=file, field="tasks")
    return Policy({name: _task_from_dict(name, body, file) for name, body in tasks.items()})


def save_policy(policy: Policy, path: str | Path) -> None:
    """Write atomically, so a gateway reloading the file never reads half of it."""
    write_atomic(path, json.dumps(policy.to_dict(), indent=2, sort_keys=True) + "\n")


def upsert_task(path: str | Path, task: TaskPolicy) -> Policy:
    """Add or replace one task's entry in a policy file (created if missing)."""
    policy = load_policy(path) if Path(path).exists() else Policy()
    policy.tasks[task.task] = task
    save_policy(policy, path)
    return policy
