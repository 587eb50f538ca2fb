"""Exact costs, hand-computed from the published rates (USD per million tokens)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import catalog, pricing
from parity.errors import InputError
from parity.pricing import CostBreakdown, PriceError, PriceTable, UnknownModelError, cost, format_usd

DOC_USAGE = {  # claude-api.md §6.5: the docs' mixed-TTL example, with an output count added
    "input_tokens": 2048,
    "cache_read_input_tokens": 1800,
    "cache_creation_input_tokens": 248,
    "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
    "output_tokens": 503,
}
TABLE = PriceTable.load()


def test_opus_4_8_itemised_by_hand():
    c = cost("claude-opus-4-8", DOC_USAGE, table=TABLE)
    assert c.input == D("0.01024")  # 2048 * $5
    assert c.cache_write_5m == D("0.000925")  # 148 * $6.25
    assert c.cache_write_1h == D("0.001")  # 100 * $10
    assert c.cache_read == D("0.0009")  # 1800 * $0.50
    assert c.output == D("0.012575")  # 503 * $25
    assert c.batch_discount == 0
    assert c.total == D("0.02564")
    assert c.to_dict() == {
        "model": "claude-opus-4-8",
        "input": "0.01024",
        "cache_write_5m": "0.000925",
        "cache_write_1h": "0.001",
        "cache_read": "0.0009",
        "output": "0.012575",
        "batch_discount": "0",
        "total": "0.02564",
    }


def test_batch_keeps_list_prices_and_shows_the_discount():
    c = cost("claude-opus-4-8", DOC_USAGE, batch=True, table=TABLE)
    assert c.output == D("0.012575")
    assert c.list_total == D("0.02564")
    assert c.batch_discount == D("-0.01282")
    assert c.total == D("0.01282")
    via_usage = cost("claude-opus-4-8", {**DOC_USAGE, "service_tier": "batch"}, table=TABLE)
    assert via_usage == c


def test_haiku_5_5_bands_at_100k_prompt_tokens():
    low = {"input_tokens": 90_000, "cache_read_input_tokens": 10_000, "output_tokens": 1_000}  # prompt exactly 100k
    c = cost("claude-haiku-5-5", low, table=TABLE)
    assert (c.input, c.cache_read, c.output, c.total) == (D("0.009"), D("0.0001"), D("0.0005"), D("0.0096"))
    high = {**low, "input_tokens": 90_001}  # one token more: the whole request, output too, at the high band
    c = cost("claude-haiku-5-5", high, table=TABLE)
    assert (c.input, c.cache_read, c.output) == (D("0.0450005"), D("0.0005"), D("0.0025"))
    assert c.total == D("0.0480005")
    writes = {"input_tokens": 1, "cache_creation_input_tokens": 100_000, "output_tokens": 0}  # writes count too
    assert cost("claude-haiku-5-5", writes, table=TABLE).cache_write_5m == D("0.0625")  # 100k * $0.625


def test_sonnet_4_5_long_context_over_200k():
    at_limit = {"input_tokens": 150_000, "cache_read_input_tokens": 50_000, "output_tokens": 1_000}
    c = cost("claude-sonnet-4-5-20250929", at_limit, table=TABLE)
    assert (c.input, c.cache_read, c.output) == (D("0.45"), D("0.015"), D("0.015"))
    c = cost("claude-sonnet-4-5", {**at_limit, "input_tokens": 150_001}, table=TABLE)
    assert (c.input, c.cache_read, c.output) == (D("0.900006"), D("0.03"), D("0.0225"))  # $6 / $0.60 / $22.50
    no_premium = cost("claude-sonnet-4-6", {**at_limit, "input_tokens": 900_000}, table=TABLE)  # 4.6: 1M at list price
    assert no_premium.input == D("2.7")


def test_inference_geo_us_on_4_6_and_later_only():
    usage = {"input_tokens": 1_000, "output_tokens": 1_000, "cache_read_input_tokens": 1_000}
    c = cost("claude-opus-4-6", usage, inference_geo="us", table=TABLE)
    assert (c.input, c.cache_read, c.output, c.total) == (D("0.0055"), D("0.00055"), D("0.0275"), D("0.03355"))
    assert cost("claude-opus-4-6", {**usage, "inference_geo": "us"}, table=TABLE) == c
    assert cost("claude-opus-4-6", usage, inference_geo="global", table=TABLE).total == D("0.0305")
    assert cost("claude-opus-4-5", usage, inference_geo="us", table=TABLE).total == D("0.0305")


def test_fast_mode_rates_and_derived_cache_rates():
    usage = {
        "input_tokens": 1_000,
        "cache_creation_input_tokens": 2_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 1_000},
        "cache_read_input_tokens": 1_000,
        "output_tokens": 1_000,
    }
    c = cost("claude-opus-4-8", usage, speed="fast", table=TABLE)
    # $10 in / $50 out; writes 1.25x and 2x of $10; read 0.1x of $10 (Opus 4.8's read ratio)
    assert (c.input, c.cache_write_5m, c.cache_write_1h, c.cache_read, c.output) == (
        D("0.01"), D("0.0125"), D("0.02"), D("0.001"), D("0.05"),
    )  # fmt: skip
    geo = cost("claude-opus-5", {**usage, "speed": "fast"}, inference_geo="us", table=TABLE)
    assert geo.total == c.total * D("1.1") == D("0.10285")
    with pytest.raises(PriceError, match="Batches"):
        cost("claude-opus-4-8", usage, speed="fast", batch=True, table=TABLE)
    with pytest.raises(PriceError, match="no fast-mode price"):
        cost("claude-sonnet-4-6", usage, speed="fast", table=TABLE)
    with pytest.raises(PriceError, match="speed"):
        cost("claude-opus-4-8", usage, speed="turbo", table=TABLE)


def test_sonnet_5_5_cache_read_cut_on_2026_10_07():
    usage = {"cache_read_input_tokens": 1_000_000}
    assert cost("claude-sonnet-5-5", usage, at=date(2026, 10, 6), table=TABLE).cache_read == D("0.20")
    assert cost("claude-sonnet-5-5", usage, at=date(2026, 10, 7), table=TABLE).cache_read == D("0.10")
    late_utc = datetime(2026, 10, 6, 23, 30, tzinfo=timezone.utc)
    assert cost("claude-sonnet-5-5", usage, at=late_utc, table=TABLE).cache_read == D("0.20")
    assert cost("claude-sonnet-5-5", usage, at=date(2026, 1, 1), table=TABLE).cache_read == D("0.20")  # before launch


def test_per_model_cache_read_rates():
    read = {"cache_read_input_tokens": 1_000_000}
    expected = {
        "claude-opus-5-5": "0.20", "claude-fable-5-1": "0.25", "claude-mythos-5-1": "0.25", "claude-fable-5": "1.00",
        "claude-haiku-4-5-20251001": "0.10", "claude-3-5-haiku-20241022": "0.08", "claude-opus-4-1": "1.50",
    }  # fmt: skip
    for model, rate in expected.items():
        assert cost(model, read, at=date(2026, 11, 20), table=TABLE).cache_read == D(rate), model


def test_cache_creation_without_split_is_all_5m():
    c = cost("claude-haiku-4-5", {"cache_creation_input_tokens": 1_000_000}, table=TABLE)
    assert (c.cache_write_5m, c.cache_write_1h) == (D("1.25"), 0)


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"input_tokens": -1}, "usage.input_tokens"),
        ({"output_tokens": 1.5}, "usage.output_tokens"),
        ({"cache_read_input_tokens": "10"}, "usage.cache_read_input_tokens"),
        ({"input_tokens": True}, "usage.input_tokens"),
        ({"cache_creation": {"ephemeral_1h_input_tokens": -3}}, "usage.cache_creation.ephemeral_1h_input_tokens"),
        (
            {"cache_creation_input_tokens": 10, "cache_creation": {"ephemeral_5m_input_tokens": 4}},
            "cache_creation_input_tokens is 10",
        ),
    ],
)
def test_bad_usage_names_the_field(usage, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        cost("claude-haiku-4-5", usage, table=TABLE)


def test_unknown_model_error_says_how_to_add_a_price(tmp_path: Path):
    with pytest.raises(UnknownModelError) as info:
        cost("claude-opus-9", DOC_USAGE, table=TABLE)
    message = str(info.value)
    assert "'claude-opus-9'" in message and "--prices" in message and "PARITY_PRICES" in message
    assert info.value is not None and isinstance(info.value, catalog.UnknownModelError)
    snippet = message[message.index("[[price]]") :]
    (tmp_path / "new.toml").write_text(snippet)  # the snippet in the message is itself a valid price file
    c = cost("claude-opus-9", {"input_tokens": 1_000_000}, table=PriceTable.load([tmp_path / "new.toml"]))
    assert c.input == D("3")


def test_user_file_overrides_by_model_and_adds_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "a.toml").write_text(
        """
[[price]]
model = "claude-haiku-4-5-20251001"   # alias: replaces the canonical row
effective_from = 2025-10-01
source = "our contract"
input = "0.5"
cache_write_5m = "0.625"
cache_write_1h = "1"
cache_read = "0.05"
output = "2.5"

[[price]]
model = "acme-llm"
effective_from = "2026-01-01"
effective_to = 2026-03-01
source = "vendor quote"
input = 7
cache_write_5m = "0"
cache_write_1h = "0"
cache_read = "0"
output = "21"
"""
    )
    monkeypatch.setenv("PARITY_PRICES", str(tmp_path / "a.toml"))
    table = pricing.default_table()
    assert table.price_for("claude-haiku-4-5").rates.input == D("0.5")
    assert table.price_for("claude-haiku-4-5").origin == str(tmp_path / "a.toml")
    assert cost("acme-llm", {"output_tokens": 1_000}, at=date(2026, 2, 1)).output == D("0.021")
    assert table.price_for("claude-opus-4-8").rates.input == D("5")  # untouched rows stay
    with pytest.raises(UnknownModelError, match="ended on 2026-03-01"):
        cost("acme-llm", {"output_tokens": 1}, at=date(2026, 3, 1))
    monkeypatch.delenv("PARITY_PRICES")
    assert pricing.default_table().price_for("claude-haiku-4-5").rates.input == D("1")


ROW = (
    'model = "m"\neffective_from = 2026-01-01\nsource = "s"\n'
    'input = "1"\ncache_write_5m = "1"\ncache_write_1h = "1"\ncache_read = "1"\noutput = "1"\n'
)
FAST = 'fast = { input = "1", output = "1" }\n'


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[[price]]\n" + ROW.replace('input = "1"', "input = 1.5"), "price[0].input", "strings"),
        ("[[price]]\n" + ROW.replace('source = "s"\n', ""), "price[0].source", "source"),
        ("[[price]]\n" + ROW.replace("2026-01-01", '"Jan 1"'), "price[0].effective_from", "date"),
        ("[[price]]\n" + ROW + "cache_write5m = \"1\"\n", "price[0]", "unknown field"),
        ("[[price]]\n" + ROW.replace('output = "1"', 'output = "-1"'), "price[0].output", ">= 0"),
        ("[[price]]\n" + ROW.replace('output = "1"', 'output = "abc"'), "price[0].output", "decimal"),
        ("[[price]]\n" + ROW.replace('output = "1"\n', ""), "price[0].output", "missing"),
        ("[[price]]\n" + ROW + "fast = { input = \"2\" }\n", "price[0].fast", "input and output"),
        ("[[price]]\n" + ROW + "long_prompt = { above_tokens = 0 }\n", "price[0].long_prompt.above_tokens", "positive"),
        ("[[price]]\n" + ROW + "[[price]]\n" + ROW, "effective_from", "overlap"),
        ("[[price]]\n" + ROW.replace('input = "1"', 'input = "3"') + FAST, "price[0].fast", "give fast.cache_read"),
        ("[[price]]\n" + ROW + "effective_to = 2025-01-01\n", "price[0].effective_to", "after"),
        ("[[price]\n", None, "TOML"),
        ("[prices]\n", None, "top-level"),
    ],
)
def test_malformed_price_file_names_file_and_field(tmp_path: Path, text: str, field: str | None, reason: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=reason) as info:
        PriceTable.load([path])
    assert info.value.file == str(path)
    assert info.value.field == field


def test_explicit_fast_cache_read_is_used_even_when_zero(tmp_path: Path):
    fast = 'fast = { input = "2", output = "4", cache_read = "0" }\n'
    (tmp_path / "fast.toml").write_text("[[price]]\n" + ROW + fast)
    table = PriceTable.load([tmp_path / "fast.toml"])
    usage = {"input_tokens": 1_000_000, "cache_read_input_tokens": 1_000_000, "cache_creation_input_tokens": 1_000_000}
    c = cost("m", usage, speed="fast", at=date(2026, 5, 1), table=table)
    assert (c.input, c.cache_write_5m, c.cache_read) == (D("2"), D("2.5"), D("0"))


def test_missing_price_file(tmp_path: Path):
    with pytest.raises(InputError, match="cannot read") as info:
        PriceTable.load([tmp_path / "nope.toml"])
    assert info.value.file == str(tmp_path / "nope.toml")


def test_every_catalogue_model_has_a_price_and_geo_only_on_4_6_plus():
    assert set(TABLE.models()) == {m.id for m in catalog.all_models()}
    first_4_6 = catalog.get_model("claude-opus-4-6").created_at
    for model in catalog.all_models():
        for row in TABLE.rows(model.id):
            assert row.source
            has_us = (row.inference_geo or {}).get("us") == D("1.1")
            assert has_us == (model.created_at >= first_4_6), model.id
            assert row.rates.cache_write_5m == row.rates.input * D("1.25"), model.id
            assert row.rates.cache_write_1h == row.rates.input * 2, model.id


def test_min_cacheable_tokens():
    assert pricing.min_cacheable_tokens("claude-opus-4-8") == 1024
    assert pricing.min_cacheable_tokens("claude-haiku-4-5-20251001") == 4096
    assert pricing.min_cacheable_tokens("claude-opus-5") == 512
    assert pricing.min_cacheable_tokens("claude-opus-4-7") == 2048
    with pytest.raises(UnknownModelError):
        pricing.min_cacheable_tokens("gpt-4")


def test_breakdowns_add_and_sum():
    a = cost("claude-opus-4-8", DOC_USAGE, table=TABLE)
    b = cost("claude-haiku-4-5", DOC_USAGE, batch=True, table=TABLE)
    assert sum([a, a], CostBreakdown.zero()) == a + a
    assert (a + a).model == "claude-opus-4-8" and (a + b).model == CostBreakdown.MIXED
    assert sum([a, b]).total == a.total + b.total
    assert CostBreakdown.zero().total == 0


def test_format_usd():
    assert format_usd(D("1234.5")) == "$1,234.50"
    assert format_usd(D("0.012565")) == "$0.012565"
    assert format_usd(D("0.0000125")) == "$0.000013"
    assert format_usd(D("0.5")) == "$0.50"
    assert format_usd(D("-0.01282")) == "-$0.01282"
    assert format_usd(D("2.675"), places=2) == "$2.68"


# --- properties ----------------------------------------------------------------------------------------

STANDARD_MODELS = [m for m in TABLE.models() if TABLE.price_for(m).long_prompt is None]
tokens = st.integers(min_value=0, max_value=12_000)  # 4 prompt counters: two usages stay under the 100k band


@st.composite
def usages(draw: st.DrawFn) -> dict:
    five, hour = draw(tokens), draw(tokens)
    return {
        "input_tokens": draw(tokens),
        "output_tokens": draw(tokens),
        "cache_read_input_tokens": draw(tokens),
        "cache_creation_input_tokens": five + hour,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
    }


def _plus(a: dict, b: dict) -> dict:
    out = {k: a[k] + b[k] for k in a if k != "cache_creation"}
    out["cache_creation"] = {k: a["cache_creation"][k] + b["cache_creation"][k] for k in a["cache_creation"]}
    return out


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(TABLE.models()),
    usage=usages(),
    batch=st.booleans(),
    geo=st.sampled_from([None, "us", "global"]),
)
def test_lines_sum_exactly_to_total(model, usage, batch, geo):
    c = cost(model, usage, batch=batch, inference_geo=geo, table=TABLE)
    assert c.input + c.cache_write_5m + c.cache_write_1h + c.cache_read + c.output + c.batch_discount == c.total
    assert c.batch_discount <= 0


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(STANDARD_MODELS + ["claude-haiku-5-5"]),
    a=usages(),
    b=usages(),
    geo=st.sampled_from([None, "us"]),
)
def test_cost_is_linear_within_a_band(model, a, b, geo):
    total = cost(model, _plus(a, b), inference_geo=geo, table=TABLE)
    assert cost(model, a, inference_geo=geo, table=TABLE) + cost(model, b, inference_geo=geo, table=TABLE) == total


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from(TABLE.models()), usage=usages())
def test_batch_total_is_exactly_half(model, usage):
    standard = cost(model, usage, table=TABLE)
    batch = cost(model, usage, batch=True, table=TABLE)
    assert batch.total * 2 == standard.total
    assert batch.list_total == standard.total
