"""LiteLLM's spend logs read straight from its PostgreSQL database (`parity audit postgresql://...`): the table as
LiteLLM's `schema.prisma` declares it, loaded with the rows of the CSV export fixture, audits to the CSV's totals.

Needs the PostgreSQL server at 127.0.0.1:5432 (trust auth, database `test`); each run works in its own schema and
drops it. Skipped, with the reason, only when the server cannot be reached.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from parity.audit import audit_paths
from parity.cli import app
from parity.errors import InputError
from parity.readers import detect_format, read_exchanges
from parity.reconcile import reconcile
from readers.fixtures import generate
from readers.test_importers import expected_total

psycopg = pytest.importorskip("psycopg")

SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=test"
URL = "postgresql://postgres@127.0.0.1:5432/test"

# LiteLLM_SpendLogs as BerriAI/litellm schema.prisma declares it, in the SQL Prisma generates for PostgreSQL
# (String → TEXT, Float → DOUBLE PRECISION, Int → INTEGER, DateTime → TIMESTAMP(3), Json → JSONB).
COLUMNS = {
    "request_id": "TEXT NOT NULL", "call_type": "TEXT NOT NULL", "api_key": "TEXT NOT NULL DEFAULT ''",
    "spend": "DOUBLE PRECISION NOT NULL DEFAULT 0.0", "total_tokens": "INTEGER NOT NULL DEFAULT 0",
    "prompt_tokens": "INTEGER NOT NULL DEFAULT 0", "completion_tokens": "INTEGER NOT NULL DEFAULT 0",
    "startTime": "TIMESTAMP(3) NOT NULL", "endTime": "TIMESTAMP(3) NOT NULL", "request_duration_ms": "INTEGER",
    "completionStartTime": "TIMESTAMP(3)", "model": "TEXT NOT NULL DEFAULT ''", "model_id": "TEXT DEFAULT ''",
    "model_group": "TEXT DEFAULT ''", "custom_llm_provider": "TEXT DEFAULT ''", "api_base": "TEXT DEFAULT ''",
    "user": "TEXT DEFAULT ''", "metadata": "JSONB DEFAULT '{}'", "cache_hit": "TEXT DEFAULT ''",
    "cache_key": "TEXT DEFAULT ''", "request_tags": "JSONB DEFAULT '[]'", "team_id": "TEXT",
    "organization_id": "TEXT", "end_user": "TEXT", "requester_ip_address": "TEXT", "messages": "JSONB DEFAULT '{}'",
    "response": "JSONB DEFAULT '{}'", "session_id": "TEXT", "status": "TEXT", "mcp_namespaced_tool_name": "TEXT",
    "agent_id": "TEXT", "proxy_server_request": "JSONB DEFAULT '{}'",
}
NULLABLE = {name for name, kind in COLUMNS.items() if "NOT NULL" not in kind}


def _typed(name: str, cell: str) -> Any:
    """A CSV cell as the column's type (ValueError when the table could not hold it)."""
    kind = COLUMNS[name].split()[0]
    if cell == "" and name in NULLABLE and kind != "TEXT":
        return None
    if kind == "INTEGER":
        return int(cell)
    if kind == "DOUBLE":
        return float(cell)
    if kind.startswith("TIMESTAMP"):
        return datetime.fromisoformat(cell.replace("Z", ""))
    if kind == "JSONB":
        return json.dumps(json.loads(cell))
    return cell


def _rows_from_csv(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The CSV fixture's rows, typed. Its two malformed rows (prompt_tokens "lots", an empty startTime) cannot
    live in typed columns, so the same kind of fault is planted where the table lets it live: a token count that
    is not a number inside metadata.usage_object, and no model at all. Returns the rows and those request_ids."""
    out, planted = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                out.append({name: _typed(name, row[name]) for name in COLUMNS})
                continue
            except ValueError:
                pass
            fixed = dict(row)
            if not row["startTime"]:
                fixed["startTime"], fixed["model"], fixed["model_group"] = row["endTime"], "", ""
            else:
                metadata = json.loads(row["metadata"])
                metadata["usage_object"]["cache_read_input_tokens"] = row["prompt_tokens"]
                fixed["prompt_tokens"], fixed["metadata"] = "0", json.dumps(metadata)
            out.append({name: _typed(name, fixed[name]) for name in COLUMNS})
            planted.append(row["request_id"])
    return out, planted


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory, calls: list[generate.Call]) -> Iterator[dict[str, Any]]:
    try:
        conn = psycopg.connect(SERVER, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"the PostgreSQL server at 127.0.0.1:5432 cannot be reached: {exc}")
    schema = f"parity_litellm_{uuid.uuid4().hex[:12]}"
    csv_path = tmp_path_factory.mktemp("litellm") / "spend.csv"
    generate.write_litellm_csv(csv_path, calls)
    rows, planted = _rows_from_csv(csv_path)
    names = list(COLUMNS)
    try:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}"."LiteLLM_SpendLogs" ('
                     + ", ".join(f'"{n}" {k}' for n, k in COLUMNS.items())
                     + ', CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY ("request_id"))')
        conn.execute(f'CREATE INDEX ON "{schema}"."LiteLLM_SpendLogs" ("startTime")')
        quoted = ", ".join(f'"{n}"' for n in names)
        with conn.cursor() as cur:
            cur.executemany(f'INSERT INTO "{schema}"."LiteLLM_SpendLogs" ({quoted}) '
                            f'VALUES ({", ".join(["%s"] * len(names))})', [[r[n] for n in names] for r in rows])
        yield {"url": f"{URL}?schema={schema}", "schema": schema, "csv": csv_path, "planted": planted,
               "rows": len(rows)}
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


def test_audit_of_the_table_equals_the_csv_export(database: dict[str, Any], calls: list[generate.Call]) -> None:
    url = database["url"]
    assert detect_format(url) == "litellm"
    from_db = audit_paths([url], workers=1).data
    from_csv = audit_paths([str(database["csv"])], workers=1).data
    assert Decimal(from_db["totals"]["cost_usd"]) == Decimal(from_csv["totals"]["cost_usd"]) == expected_total(calls)
    assert from_db["totals"]["tokens"] == from_csv["totals"]["tokens"]
    assert from_db["totals"]["requests"] == from_csv["totals"]["requests"] == len(calls)
    (db_source,) = from_db["sources"]
    (csv_source,) = from_csv["sources"]
    assert db_source["format"] == "litellm" and db_source["records"] == csv_source["records"]
    assert Decimal(db_source["source_cost_usd"]) == Decimal(csv_source["source_cost_usd"])  # LiteLLM's `spend`
    assert db_source["agrees"] is True and db_source["bodies"] == "none"
    reasons = sorted(m["reason"] for m in from_db["malformed"])
    assert len(reasons) == 2 and all("request_id" in r for r in reasons)
    assert any("'req_bad1'" in r and "cache_read_input_tokens" in r for r in reasons)
    assert any("'req_bad2'" in r and "model is missing" in r for r in reasons)
    assert all(m["file"].startswith("postgresql") and m["line"] >= 1 for m in from_db["malformed"])


def test_cli_audit_and_reconcile_read_the_url(database: dict[str, Any], fixtures: dict[str, Any],
                                             tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    # a password in the URL (the server trusts local connections, so any will do) never reaches the report
    with_password = database["url"].replace("postgres@", "postgres:s3cret-pw@", 1)
    result = CliRunner().invoke(app, ["audit", with_password, "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    source = json.loads(out.read_text())["sources"][0]
    assert source["format"] == "litellm" and "***" in source["path"]
    assert "s3cret-pw" not in out.read_text(), _where("s3cret-pw", json.loads(out.read_text()))
    data = reconcile([database["url"]], fixtures["cost_report.json"][0])
    assert data["flagged"] == 0 and Decimal(data["totals"]["difference_usd"]) == 0
    assert data["priced_calls"] == len(generate.calls())


def _where(text: str, data: Any, path: str = "") -> list[str]:
    """The JSON paths at which `text` occurs in a string."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _where(text, v, f"{path}.{k}")]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _where(text, v, f"{path}[{i}]")]
    return [path] if isinstance(data, str) and text in data else []


def test_response_cache_hits_are_skipped(database: dict[str, Any]) -> None:
    ids = [item.tags["litellm.request_id"] for _, item in read_exchanges(database["url"]) if hasattr(item, "tags")]
    assert "req_cachehit" not in ids and len(ids) == 300 == database["rows"] - 3


def test_wrong_schema_or_server_is_a_clear_error(database: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="no table LiteLLM_SpendLogs in schema 'nowhere'"):
        list(read_exchanges(f"{URL}?schema=nowhere"))
    with pytest.raises(InputError, match="cannot read the database") as caught:
        detect_format("postgresql://postgres:secret@127.0.0.1:1/test")
    assert "secret" not in str(caught.value) and "***" in str(caught.value)
