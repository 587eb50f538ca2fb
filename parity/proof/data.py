"""A task's prompts for a proof: where they come from, how they are split, and the seal on the test split.

Why splits by group and never by row (reference proof-science §3.6): prompts from one template, customer or
conversation look alike, so a row split leaks near-copies of test prompts into the demonstrations and the
validation set, and the test then measures memory instead of quality. Time splits serve drifting traffic.

The test split is sealed: `Splits.test` is a `SealedSplit`, not a list. The optimiser is handed only
`Splits.train` and `Splits.validation`; the runner breaks the seal (`unseal`) only after the prompt is frozen.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from parity.errors import InputError, ParityError
from parity.exchange import Exchange, Rejected, read_jsonl
from parity.fingerprint import fingerprint as template_fingerprint
from parity.task import task_of

TASK_RULE = "tag, x-parity-task header, metadata.user_id task:NAME, or the named template fingerprint"
Kind = Literal["label", "number", "json", "text"]
SplitBy = Literal["auto", "group", "time"]
SPLIT_BYS = ("auto", "group", "time")
DEFAULT_FRACTIONS = (0.2, 0.3, 0.5)
"""train / validation / test (reference §3.6: about 20% / 30% / the rest)."""
MAX_LABELS = 30
MAX_LABEL_CHARS = 40
LABEL_COVERAGE = 0.95


@dataclass(frozen=True)
class ProofItem:
    """One prompt of the task: the request as the team sends it, and what is known about its answer.

    `baseline_output` is the baseline's logged answer (None until logged or called); `gold` a known right
    answer (label, number or JSON object) where the data has one; `reference` the gold written as an answer
    (for reference-guided judging); `stratum` the slice it is reported in.
    """

    id: str
    group: str
    request: dict[str, Any]
    baseline_output: str | None = None
    gold: Any = None
    reference: str | None = None
    stratum: str = "all"
    started_at: datetime | None = None
    baseline_usage: dict[str, Any] | None = None

    @property
    def input_text(self) -> str:
        """The final user turn's text: what a demonstration's `input` holds for this item."""
        return last_user_text(self.request)


@dataclass(frozen=True)
class TaskData:
    """Every prompt of one task, with where they came from (recorded in the certificate)."""

    task: str
    items: tuple[ProofItem, ...]
    source: str
    simulated: bool = False
    rejected: tuple[str, ...] = ()
    selection: Mapping[str, Any] | None = None
    """How the rows were chosen from the source: the task rule, rows taken, rows left out, and by what."""

    def with_items(self, items: Iterable[ProofItem]) -> TaskData:
        return replace(self, items=tuple(items))


def last_user_text(request: Mapping[str, Any]) -> str:
    """Text of the last user turn of a Messages request (its text blocks joined)."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "\n".join(
                str(b.get("text", "")) for b in content or [] if isinstance(b, Mapping) and b.get("type") == "text"
            )
    return ""


def output_text(message: Mapping[str, Any] | None) -> str | None:
    """The text a Message answered (text blocks joined; tool calls as JSON); None for no message."""
    if not message:
        return None
    parts = []
    for block in message.get("content") or []:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            parts.append(json.dumps(block.get("input", {}), ensure_ascii=False, sort_keys=True))
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------


def _group_of(ex: Exchange) -> str:
    for key in ("conversation", "customer", "group", "user"):
        if ex.tags.get(key):
            return f"{key}:{ex.tags[key]}"
    user = (ex.request.get("metadata") or {}).get("user_id")
    if user:
        return f"user:{user}"
    return f"template:{template_fingerprint(ex.request)}"


def _gold_of(tags: Mapping[str, str]) -> Any:
    raw = tags.get("gold")
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def items_from_exchanges(
    rows: Iterable[tuple[int, Exchange | Rejected]], *, task: str | None, source: str,
    fingerprint: str | None = None,
) -> TaskData:
    """Proof items from the logged exchanges that belong to `task` by the one task rule (`parity.task`): a tag,
    `metadata`, or the template `fingerprint` when one is given. Every row is taken when task is None.

    Untagged rows are never taken as the task on a guess: a proof about one task must not rest on another
    template's prompts. The rows taken and left out are counted in `selection` (printed, and stored in the
    certificate). The logged response is the baseline's output. Rows that failed (an error, no response) are
    skipped and counted in `rejected`. A row that cannot be read at all is an InputError naming its file and
    line: a proof must not quietly run on part of the data. A source with no usable row is an InputError too.
    """
    items: list[ProofItem] = []
    rejected: list[str] = []
    by: Counter[str] = Counter()
    left_out = 0
    fingerprints = {fingerprint: task} if fingerprint and task is not None else None
    for line, row in rows:
        if isinstance(row, Rejected):
            raise InputError(f"{row.reason}; fix or delete this line, then run again", file=row.file, line=row.line)
        if task is not None:
            found = task_of(row.request, tags=row.tags, fingerprints=fingerprints)
            if found is None or found.name != task:
                left_out += 1
                continue
            by[found.how] += 1
        if row.response is None or row.error is not None:
            rejected.append(f"{source}:{line}: no successful response to use as the baseline's output")
            continue
        items.append(ProofItem(
            id=row.tags.get("id") or f"row-{line}",
            group=_group_of(row),
            request=row.request,
            baseline_output=output_text(row.response),
            gold=_gold_of(row.tags),
            reference=row.tags.get("reference"),
            stratum=row.tags.get("stratum") or "all",
            started_at=row.started_at,
            baseline_usage=row.usage,
        ))
    if not items:
        hint = ("no row names it by a `task` tag or `metadata.user_id` \"task:NAME\""
                + ("" if fingerprint else "; pass --fingerprint fp_... to take a template's untagged rows"))
        raise InputError(f"no usable exchanges{f' for task {task!r} ({left_out} rows of other or no task; {hint})' if task else ''}; "
                         "check the task name and that the rows have responses", file=source)
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise InputError("item ids repeat; give each row a unique `id` tag or leave the tag off", file=source)
    selection = {"rule": TASK_RULE, "task": task, "fingerprint": fingerprint, "taken": sum(by.values()),
                 "left_out": left_out, "by": dict(sorted(by.items()))} if task is not None else None
    return TaskData(task or "task", tuple(items), source, rejected=tuple(rejected), selection=selection)


def load_jsonl(path: str | Path, *, task: str | None = None, fingerprint: str | None = None) -> TaskData:
    """A task's prompts and the baseline's logged outputs from an Exchange JSONL file."""
    if not Path(path).is_file():
        raise InputError("no such file; give the Exchange JSONL log of the task (one request/response per line)",
                         file=str(path))
    return items_from_exchanges(read_jsonl(path), task=task, source=str(path), fingerprint=fingerprint)


def load_ledger(url: str, *, task: str | None = None, fingerprint: str | None = None) -> TaskData:
    """A task's prompts and the baseline's logged outputs from the gateway's ledger."""
    from parity.ledger.reader import read_ledger  # SQLAlchemy (~0.5 s to import) only for a ledger URL

    rows = read_ledger(url, task=None if fingerprint else task)  # a fingerprint also takes the untagged rows
    return items_from_exchanges(rows, task=task, source=url, fingerprint=fingerprint)


# --------------------------------------------------------------------------------------------------------------
# What kind of answer the task has
# --------------------------------------------------------------------------------------------------------------


def infer_kind(items: Sequence[ProofItem]) -> Kind:
    """label / number / json / text, from the gold answers when every item has one, else from the outputs."""
    golds = [i.gold for i in items]
    if golds and all(g is not None for g in golds):
        if all(isinstance(g, Mapping) for g in golds):
            return "json"
        if all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in golds):
            return "number"
        if all(isinstance(g, str) for g in golds):
            distinct = {g.strip().casefold() for g in golds}
            if len(distinct) <= MAX_LABELS and max(len(g) for g in golds) <= MAX_LABEL_CHARS:
                return "label"
        return "text"
    outputs = [i.baseline_output for i in items if i.baseline_output is not None]
    if not outputs:
        return "text"
    parsed = 0
    for text in outputs:
        try:
            parsed += isinstance(json.loads(text), dict)
        except json.JSONDecodeError:
            pass
    if parsed >= 0.9 * len(outputs):
        return "json"
    return "label" if closed_set(outputs) is not None else "text"


def closed_set(outputs: Sequence[str]) -> list[str] | None:
    """The labels of logged answers that come from a small closed set, else None.

    Logged answers slip now and then (`Label: billing`, a label plus a sentence), so the set is the short answers
    seen at least twice, and it counts as closed when they cover at least LABEL_COVERAGE of the answers.
    """
    if not outputs:
        return None
    forms: dict[str, Counter[str]] = {}
    for text in outputs:
        forms.setdefault(text.strip().casefold(), Counter())[text.strip()] += 1
    labels = [c.most_common(1)[0][0] for key, c in forms.items()
              if sum(c.values()) >= 2 and 0 < len(key) <= MAX_LABEL_CHARS]
    covered = sum(sum(forms[label.casefold()].values()) for label in labels)
    if not labels or len(labels) > MAX_LABELS or covered < LABEL_COVERAGE * len(outputs):
        return None
    return sorted(labels)


def label_set(items: Sequence[ProofItem]) -> list[str]:
    """The task's labels: the distinct gold labels, else the closed set of the baseline's answers."""
    golds = [str(i.gold) for i in items if i.gold is not None]
    if golds:
        return sorted(set(golds))
    outputs = [i.baseline_output for i in items if i.baseline_output]
    return closed_set(outputs) or sorted({o.strip() for o in outputs})


def gold_text(item: ProofItem) -> str | None:
    """The gold answer as text a scorer compares against (JSON for objects)."""
    if item.gold is None:
        return None
    if isinstance(item.gold, (Mapping, list)):
        return json.dumps(item.gold, ensure_ascii=False)
    return str(item.gold)


def infer_schema(items: Sequence[ProofItem]) -> dict[str, Any] | None:
    """The output contract of a JSON task: the request's own output schema if it asks for one, else a schema
    read off the answers (an object whose fields present in at least 95% of answers are required)."""
    for item in items:
        fmt = ((item.request.get("output_config") or {}).get("format")) or {}
        if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), Mapping):
            return dict(fmt["schema"])
    objects: list[Mapping[str, Any]] = []
    for item in items:
        value = item.gold if isinstance(item.gold, Mapping) else None
        if value is None and item.baseline_output:
            try:
                value = json.loads(item.baseline_output)
            except json.JSONDecodeError:
                value = None
        if isinstance(value, Mapping):
            objects.append(value)
    if not objects:
        return None
    names = {"str": "string", "int": "number", "float": "number", "bool": "boolean", "list": "array",
             "dict": "object", "NoneType": "null"}
    types: dict[str, set[str]] = {}
    seen: Counter[str] = Counter()
    for obj in objects:
        for key, value in obj.items():
            seen[key] += 1
            types.setdefault(key, set()).add(names.get(type(value).__name__, "string"))
    props = {k: {"type": sorted(v)[0] if len(v) == 1 else sorted(v)} for k, v in types.items()}
    required = sorted(k for k, c in seen.items() if c >= 0.95 * len(objects))
    return {"type": "object", "properties": props, "required": required}


# --------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------


class SealedSplit:
    """The test split behind a seal: its size and ids can be read, its prompts only after `unseal`.

    Not a Sequence on purpose: anything that iterates or indexes it (an optimiser given it by mistake) fails.
    """

    def __init__(self, items: Sequence[ProofItem]):
        self._items = tuple(items)
        self.ids: tuple[str, ...] = tuple(i.id for i in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ProofItem]:
        raise ParityError("the test split is sealed: only the final sequential test may read it (call unseal() "
                          "after the prompt is frozen); never give it to the optimiser")

    def __getitem__(self, index: Any) -> ProofItem:
        raise ParityError("the test split is sealed; call unseal() after the prompt is frozen")

    def unseal(self) -> tuple[ProofItem, ...]:
        """The test prompts, for the sequential test only."""
        return self._items


@dataclass(frozen=True)
class Splits:
    """train (demonstration pool) / validation (selection) / test (sealed; the e-process only)."""

    train: tuple[ProofItem, ...]
    validation: tuple[ProofItem, ...]
    test: SealedSplit
    by: str
    seed: int
    groups: dict[str, str] = field(default_factory=dict)
    """group -> split name, for the certificate (group splits) or the cut times (time splits)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "seed": self.seed,
            "train": [i.id for i in self.train],
            "validation": [i.id for i in self.validation],
            "test": list(self.test.ids),
            "groups": dict(sorted(self.groups.items())),
        }


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise InputError(f"split fractions must be three positive numbers summing to 1, got {list(fractions)}",
                         field="fractions")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def all_for_test(items: Sequence[ProofItem], seed: int = 0) -> Splits:
    """Every prompt in the test split: with no optimisation nothing is tuned, so nothing is held back for it."""
    if not items:
        raise InputError("no prompts to test")
    return Splits((), (), SealedSplit(items), "none (no optimisation: every prompt is a test prompt)", seed)


def split(
    items: Sequence[ProofItem],
    *,
    by: SplitBy = "group",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> Splits:
    """Split by group (every prompt of a group lands in one split; groups shuffled with `seed`) or by time
    (oldest prompts train, newest test). Never by row.

    `auto` splits by group when there are at least three groups and none holds more than half the prompts
    (a log of one template with no customer or conversation tags is a single group), else by time when every
    prompt has a timestamp. The method used is recorded in `Splits.by`.
    """
    f_train, f_val, _ = _check_fractions(fractions)
    if len(items) < 3:
        raise InputError(f"{len(items)} prompts cannot fill three splits; a proof needs dozens at least")
    n = len(items)
    if by == "auto":
        sizes = Counter(i.group for i in items)
        if len(sizes) >= 3 and max(sizes.values()) <= n / 2:
            by = "group"
        elif all(i.started_at is not None for i in items):
            by = "time"
        else:
            raise InputError(f"the prompts fall into {len(sizes)} groups (largest {max(sizes.values())} of {n}) and "
                             "have no timestamps, so neither a group nor a time split is possible. Tag rows with "
                             "customer or conversation, or log started_at", field="split-by")
    if by == "time":
        if any(i.started_at is None for i in items):
            raise InputError("a time split needs a timestamp on every prompt; use --split-by group instead",
                             field="split-by")
        ordered = sorted(items, key=lambda i: (i.started_at, i.id))
        a, b = round(n * f_train), round(n * (f_train + f_val))
        parts = ordered[:a], ordered[a:b], ordered[b:]
        if not all(parts):
            raise InputError(f"{n} prompts are too few for a time split with fractions {list(fractions)}")
        cuts = {"train_until": str(parts[0][-1].started_at), "validation_until": str(parts[1][-1].started_at)}
        return Splits(tuple(parts[0]), tuple(parts[1]), SealedSplit(parts[2]), "time", seed, cuts)
    if by != "group":
        raise InputError(f"unknown split {by!r}; use one of {', '.join(SPLIT_BYS)}", field="split-by")
    by_group: dict[str, list[ProofItem]] = {}
    for item in items:
        by_group.setdefault(item.group, []).append(item)
    if len(by_group) < 3:
        raise InputError(f"only {len(by_group)} distinct groups; a group split needs at least 3 (one per split). "
                         "Tag rows with customer/conversation, or use --split-by time")
    names = sorted(by_group)
    random.Random(f"parity-split/{seed}").shuffle(names)
    targets = (f_train * n, (f_train + f_val) * n)
    assignment: dict[str, str] = {}
    parts_l: tuple[list[ProofItem], list[ProofItem], list[ProofItem]] = ([], [], [])
    done = 0
    for index, name in enumerate(names):
        left = len(names) - index
        size = len(by_group[name])
        # fill train, then validation, then test, by cumulative size; keep at least one group for each later split
        if not parts_l[0] or (done + size / 2 <= targets[0] and left > 2):
            slot = 0
        elif not parts_l[1] or (done + size / 2 <= targets[1] and left > 1):
            slot = 1
        else:
            slot = 2
        parts_l[slot].extend(by_group[name])
        assignment[name] = ("train", "validation", "test")[slot]
        done += size
    if not parts_l[2]:
        raise InputError("the groups are too uneven to leave any for the test split; use more groups or --split-by time")
    return Splits(tuple(parts_l[0]), tuple(parts_l[1]), SealedSplit(parts_l[2]), "group", seed, assignment)


__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLIT_BYS",
    "ProofItem",
    "SealedSplit",
    "Splits",
    "all_for_test",
    "TaskData",
    "gold_text",
    "infer_kind",
    "infer_schema",
    "items_from_exchanges",
    "label_set",
    "last_user_text",
    "load_jsonl",
    "load_ledger",
    "output_text",
    "split",
]
