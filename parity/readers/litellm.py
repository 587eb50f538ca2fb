"""LiteLLM spend logs → Exchanges: a CSV export of the `LiteLLM_SpendLogs` table, the JSON rows `/spend/logs`
returns (a JSON array, or one row per line), or the table itself at a `postgresql://` URL (LiteLLM's own
DATABASE_URL; Prisma's `?schema=NAME` picks the schema). The database is only read, rows in startTime order.

Columns (BerriAI/litellm `schema.prisma`): `request_id`, `call_type`, `spend`, `prompt_tokens`,
`completion_tokens`, `startTime`, `endTime`, `model`, `custom_llm_provider`, `metadata` (JSON), `cache_hit`,
`messages`, `response`, `status`, ...

Tokens: cache tokens are not columns; they sit in `metadata.usage_object` (`cache_read_input_tokens`,
`cache_creation_input_tokens`, or `prompt_tokens_details.{cached_tokens, cache_creation_tokens,
cache_creation_token_details.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}}`). LiteLLM's `prompt_tokens`
counts input *inclusive* of cache reads and writes, so uncached input = prompt_tokens - reads - writes; a row whose
prompt_tokens is smaller than its cache tokens contradicts that and stops the read (`SemanticsError`). Writes with no
TTL split are 5-minute writes, as the API counts them.

Other rules: `cache_hit` true is LiteLLM's own *response* cache (no call reached Anthropic, nothing billed), so the
row is skipped, not priced; `status` "failure" is an error, not billed; a batch call is one whose usage object says
`service_tier: "batch"` or whose `call_type` names a batch. `spend` is LiteLLM's own cost, kept beside Parity's.
`messages` is `{}` unless `store_prompts_in_spend_logs` was on; without it the audit is cost-level only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from parity.errors import InputError
from parity.exchange import Exchange, Rejected
from parity.ledger.schema import display_url
from parity.readers.common import (
    RowError,
    count,
    exchange,
    json_cell,
    model_id,
    money,
    records,
    rows,
    split_inclusive,
    timestamp,
    usage,
)

FORMAT = "litellm"
COLUMNS = frozenset({"request_id", "spend", "startTime", "call_type"})
"""Columns whose presence marks a LiteLLM spend-log row (CSV header or JSON keys)."""


def is_litellm_row(keys: Any) -> bool:
    return COLUMNS <= set(keys)


def read_litellm(source: str | Path, *, shape: str | None = None) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line, Exchange | Rejected) for every row of a spend-log file, or of `LiteLLM_SpendLogs` at a
    `postgresql://` URL (then `line` is the row's place in startTime order, and a reason names its request_id);
    skipped rows (response-cache hits) yield nothing."""
    text = str(source)
    if "://" in text:
        file = display_url(text)

        def read_db_row(line: int, row: Any) -> Exchange | None:
            try:
                return _row(row, file, line)
            except RowError as exc:
                raise RowError(f"request_id {row.get('request_id')!r}: {exc}") from None

        return rows(file, database_rows(text), read_db_row)
    return rows(text, records(source, shape), lambda line, row: _row(row, text, line))


# --- the LiteLLM_SpendLogs table --------------------------------------------------------------------------

TABLE = "LiteLLM_SpendLogs"
SCHEMA_PARAM = "schema"
"""Prisma's `?schema=NAME` in LiteLLM's DATABASE_URL: the PostgreSQL schema its tables live in (default public)."""


def _split_url(url: str) -> tuple[Any, str | None]:
    """(SQLAlchemy URL on psycopg 3, PostgreSQL schema) for a LiteLLM DATABASE_URL; `?schema=` is Prisma's, not
    libpq's, so it is taken out of the URL and applied to the table instead."""
    import sqlalchemy as sa

    from parity.ledger.schema import ledger_url  # the one place `postgresql://` is mapped to psycopg 3

    try:
        parsed = sa.engine.make_url(ledger_url(url))
    except sa.exc.ArgumentError as exc:
        raise InputError(f"not a database URL ({exc})", file=display_url(url)) from None
    schema = parsed.query.get(SCHEMA_PARAM)
    if isinstance(schema, tuple):
        schema = schema[-1]
    return parsed.difference_update_query([SCHEMA_PARAM]), schema or None


def _engine(url: str) -> tuple[Any, str | None]:
    import sqlalchemy as sa

    parsed, schema = _split_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise InputError("LiteLLM keeps its spend logs in PostgreSQL; give a postgresql:// URL",
                         file=display_url(url))
    return sa.create_engine(parsed, connect_args={"connect_timeout": 10}), schema


def is_litellm_database(url: str) -> bool:
    """Whether a database URL holds LiteLLM's `LiteLLM_SpendLogs` table (in `?schema=`, else public)."""
    import sqlalchemy as sa

    if not url.startswith(("postgresql", "postgres")):
        return False
    engine, schema = _engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table(TABLE, schema=schema)
    except sa.exc.SQLAlchemyError as exc:
        raise InputError(f"cannot read the database: {_first_line(exc)}", file=display_url(url)) from None
    finally:
        engine.dispose()


def database_rows(url: str, batch_rows: int = 1000) -> Iterator[tuple[int, dict[str, Any]]]:
    """(place in startTime order from 1, row as a dict by column) from `LiteLLM_SpendLogs`, streamed; the table is
    reflected, so columns LiteLLM adds later come along (and ones it drops are simply absent)."""
    import sqlalchemy as sa

    engine, schema = _engine(url)
    try:
        with engine.connect() as conn:
            try:
                table = sa.Table(TABLE, sa.MetaData(), schema=schema, autoload_with=conn)
            except sa.exc.NoSuchTableError:
                where = f"schema {schema!r}" if schema else "the default schema (add ?schema=NAME for another)"
                raise InputError(f"no table {TABLE} in {where}", file=display_url(url)) from None
            order = [table.c[name] for name in ("startTime", "request_id") if name in table.c]
            query = sa.select(table).order_by(*order).execution_options(stream_results=True, yield_per=batch_rows)
            for number, row in enumerate(conn.execute(query), start=1):
                yield number, dict(row._mapping)
    except sa.exc.SQLAlchemyError as exc:
        raise InputError(f"cannot read {TABLE}: {_first_line(exc)}", file=display_url(url)) from None
    finally:
        engine.dispose()


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().split("\n", 1)[0]


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "t", "yes"))


def _row(row: Any, file: str, line: int) -> Exchange | None:
    if not isinstance(row, Mapping):
        raise RowError(f"expected a spend-log row object, got {type(row).__name__}")
    if _truthy(row.get("cache_hit")):
        return None  # LiteLLM's response cache answered: Anthropic never saw (or billed) this call
    model = model_id(row.get("model") or row.get("model_group"), "model")
    started = timestamp(row.get("startTime"), "startTime")
    ended = timestamp(row["endTime"], "endTime") if row.get("endTime") else started
    metadata = json_cell(row.get("metadata"), "metadata") or {}
    if not isinstance(metadata, Mapping):
        raise RowError("metadata must be a JSON object")
    usage_obj = metadata.get("usage_object") or {}
    if not isinstance(usage_obj, Mapping):
        raise RowError("metadata.usage_object must be an object")
    spend = money(row.get("spend"), "spend")
    tier = usage_obj.get("service_tier")
    call_type = str(row.get("call_type") or "")
    batch = tier == "batch" or "batch" in call_type.lower()
    tags = {"litellm.request_id": str(row.get("request_id") or "")}
    for key in ("team_id", "user", "end_user"):
        if row.get(key):
            tags[f"litellm.{key}"] = str(row[key])
    request = _request(row, model)
    if str(row.get("status") or "").lower() == "failure":
        return exchange(fmt=FORMAT, model=model, usage_obj={}, started_at=started, source_cost=spend, batch=batch,
                        duration_ms=int((ended - started).total_seconds() * 1000), tags=tags, request=request,
                        error=str(metadata.get("error_information") or "LiteLLM logged the call as failed"))

    details = usage_obj.get("prompt_tokens_details") or {}
    if not isinstance(details, Mapping):
        raise RowError("metadata.usage_object.prompt_tokens_details must be an object")
    read = count(usage_obj.get("cache_read_input_tokens"), "metadata.usage_object.cache_read_input_tokens") or \
        count(details.get("cached_tokens"), "metadata.usage_object.prompt_tokens_details.cached_tokens")
    write = count(usage_obj.get("cache_creation_input_tokens"),
                  "metadata.usage_object.cache_creation_input_tokens") or \
        count(details.get("cache_creation_tokens"), "metadata.usage_object.prompt_tokens_details.cache_creation_tokens")
    split = details.get("cache_creation_token_details") or usage_obj.get("cache_creation") or {}
    if not isinstance(split, Mapping):
        raise RowError("metadata.usage_object...cache_creation_token_details must be an object")
    hour = count(split.get("ephemeral_1h_input_tokens"), "cache_creation_token_details.ephemeral_1h_input_tokens")
    five = count(split.get("ephemeral_5m_input_tokens"), "cache_creation_token_details.ephemeral_5m_input_tokens")
    if split and five + hour != write:
        if write == 0:
            write = five + hour
        else:
            raise RowError(f"cache_creation_token_details splits {five} 5m + {hour} 1h tokens, but "
                           f"cache_creation_input_tokens is {write}; they must agree")
    five = write - hour
    prompt_raw = row.get("prompt_tokens")
    prompt = count(prompt_raw if prompt_raw not in (None, "") else usage_obj.get("prompt_tokens"), "prompt_tokens")
    output = count(row.get("completion_tokens") if row.get("completion_tokens") not in (None, "")
                   else usage_obj.get("completion_tokens"), "completion_tokens")
    uncached = split_inclusive(prompt, read, write, field="prompt_tokens", file=file, line=line, source="LiteLLM")
    return exchange(fmt=FORMAT, model=model, usage_obj=usage(uncached, read, five, hour, output, service_tier=tier),
                    started_at=started, duration_ms=int((ended - started).total_seconds() * 1000),
                    ident=str(row.get("request_id") or ""), source_cost=spend, batch=batch, request=request, tags=tags)


def _request(row: Mapping[str, Any], model: str) -> dict[str, Any] | None:
    """The request body when `store_prompts_in_spend_logs` kept it (OpenAI-style messages; system turns lifted)."""
    messages = json_cell(row.get("messages"), "messages")
    if isinstance(messages, Mapping):
        messages = messages.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    system = [m.get("content") for m in messages if isinstance(m, Mapping) and m.get("role") == "system"]
    turns = [{"role": "assistant" if m.get("role") == "assistant" else "user", "content": m.get("content", "")}
             for m in messages if isinstance(m, Mapping) and m.get("role") != "system"]
    request: dict[str, Any] = {"model": model, "messages": turns}
    if system:
        request["system"] = system[0] if len(system) == 1 and isinstance(system[0], (str, list)) else \
            "\n".join(str(s) for s in system)
    return request


__all__ = ["COLUMNS", "FORMAT", "TABLE", "database_rows", "is_litellm_database", "is_litellm_row",
           "read_litellm"]
