"""Langfuse's Parquet export: the same observations as its JSONL export, written with pyarrow the way Langfuse's
blob-storage export types them (maps as map columns, times as timestamps), audit to the same exact total."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from parity.audit import audit_paths
from parity.errors import InputError
from parity.readers import detect_format, read_exchanges
from readers.fixtures import generate
from readers.test_importers import expected_total

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SCHEMA = {
    "usage_details": pa.map_(pa.string(), pa.int64()), "cost_details": pa.map_(pa.string(), pa.float64()),
    "metadata": pa.map_(pa.string(), pa.string()), "start_time": pa.timestamp("us"),
    "end_time": pa.timestamp("us"), "created_at": pa.timestamp("us"), "updated_at": pa.timestamp("us"),
    "completion_start_time": pa.timestamp("us"), "total_cost": pa.float64(), "latency": pa.float64(),
    "time_to_first_token": pa.float64(), "tool_calls": pa.list_(pa.string()),
    "tool_call_names": pa.list_(pa.string()), "tool_definitions": pa.list_(pa.string()),
    "tags": pa.list_(pa.string()),
}
"""Column types for the fixture's columns that are not plain strings."""


def _cell(name: str, value: Any) -> Any:
    if value is None:
        return None
    kind = SCHEMA.get(name)
    if kind is not None and pa.types.is_map(kind):
        return list(value.items())
    if kind is not None and pa.types.is_timestamp(kind):
        return datetime.fromisoformat(value)
    if kind is None and not isinstance(value, str):
        return json.dumps(value)
    return value


def write_langfuse_parquet(path: Path, calls: list[generate.Call]) -> list[int]:
    """The fixture's Langfuse observations (the JSONL export's rows, malformed ones included) as Parquet; returns
    the malformed rows' numbers (a Parquet row's number is its place in the file, from 1)."""
    rows = generate._langfuse_rows(calls)
    columns = list(rows[0][1])
    fields = [pa.field(name, SCHEMA.get(name, pa.string())) for name in columns]
    table = pa.table({f.name: pa.array([_cell(f.name, row[f.name]) for _, row in rows], type=f.type)
                      for f in fields})
    pq.write_table(table, path, row_group_size=97)  # several row groups, so rows are numbered across them
    return [i + 1 for i, (kind, _) in enumerate(rows) if kind == "bad"]


@pytest.fixture(scope="module")
def parquet_file(tmp_path_factory: pytest.TempPathFactory, calls: list[generate.Call]) -> tuple[Path, list[int]]:
    path = tmp_path_factory.mktemp("parquet") / "observations.parquet"
    return path, write_langfuse_parquet(path, calls)


def test_detected_by_magic_bytes_and_columns(parquet_file: tuple[Path, list[int]], tmp_path: Path) -> None:
    path, _ = parquet_file
    assert path.read_bytes()[:4] == b"PAR1"
    assert detect_format(path) == "langfuse"
    renamed = tmp_path / "export.jsonl"  # the name says JSON lines; the bytes say Parquet, and they decide
    renamed.write_bytes(path.read_bytes())
    assert detect_format(renamed) == "langfuse"


def test_audits_to_the_exact_total_of_the_jsonl_export(parquet_file: tuple[Path, list[int]],
                                                        fixtures: dict[str, Any], calls: list[generate.Call]) -> None:
    path, bad_rows = parquet_file
    data = audit_paths([str(path)], workers=1).data
    jsonl = audit_paths([str(fixtures["langfuse.jsonl"][0])], workers=1).data
    assert Decimal(data["totals"]["cost_usd"]) == expected_total(calls) == Decimal(jsonl["totals"]["cost_usd"])
    assert data["totals"]["tokens"] == jsonl["totals"]["tokens"]
    assert data["totals"]["tokens"]["cache_write_1h"] == sum(c.w1 for c in calls)
    assert sorted(m["line"] for m in data["malformed"]) == bad_rows == fixtures["langfuse.jsonl"][1]
    (source,) = data["sources"]
    (jsonl_source,) = jsonl["sources"]
    assert source["format"] == "langfuse" and source["records"] == jsonl_source["records"]
    assert source["source_cost_usd"] == jsonl_source["source_cost_usd"] is not None
    assert source["explanation_id"] == "cache_counted_twice"


def test_batch_and_ttl_read_from_map_columns(parquet_file: tuple[Path, list[int]],
                                             calls: list[generate.Call]) -> None:
    path, _ = parquet_file
    items = {item.tags["langfuse.observation_id"]: item for _, item in read_exchanges(path)
             if not hasattr(item, "reason")}
    for c in calls[:40]:
        item = items[f"obs-{c.ident}"]
        assert item.batch is c.batch and item.started_at == c.started
        assert item.usage["cache_creation"] == {"ephemeral_5m_input_tokens": c.w5, "ephemeral_1h_input_tokens": c.w1}


def test_without_pyarrow_says_what_to_install(parquet_file: tuple[Path, list[int]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = parquet_file
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"pip install 'parity\[parquet\]'") as caught:
        detect_format(path)
    assert caught.value.file == str(path)
    with pytest.raises(InputError, match=r"pip install 'parity\[parquet\]'"):
        list(read_exchanges(path, format="langfuse"))


def test_damaged_parquet_is_a_clear_error(parquet_file: tuple[Path, list[int]], tmp_path: Path) -> None:
    path, _ = parquet_file
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(InputError, match="unreadable Parquet file") as caught:
        detect_format(cut)
    assert caught.value.file == str(cut)
    items = list(read_exchanges(cut, format="langfuse"))  # forced: reported as a record, never a traceback
    assert len(items) == 1 and "unreadable Parquet" in items[0][1].reason


def test_parquet_of_unknown_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"when": ["2026-11-02"], "amount": [1.5]}), path)
    with pytest.raises(InputError, match="columns match no export"):
        detect_format(path)
