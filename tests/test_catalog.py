"""The model catalogue against the rules of claude-api.md §2.1, §6.7 and §9 and the SDK's own types."""

from __future__ import annotations

import typing

import anthropic
import pytest
from anthropic.types import ModelInfo as SDKModelInfo

from parity import catalog, pricing
from parity.catalog import UnknownModelError, all_models, get_model, model_info_json, resolve

AT_LEAST_4_7 = {
    "claude-opus-4-7", "claude-opus-4-8", "claude-opus-5", "claude-opus-5-5", "claude-sonnet-5", "claude-sonnet-5-5",
    "claude-haiku-5-5", "claude-fable-5", "claude-fable-5-1", "claude-fable-5-2", "claude-mythos-5",
    "claude-mythos-5-1", "claude-mythos-5-2", "claude-mythos-preview",
}  # fmt: skip
AT_MOST_4_5 = {
    "claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-opus-4-0",
    "claude-sonnet-4-0", "claude-3-5-haiku-latest",
}  # fmt: skip


def test_every_sdk_model_id_is_known():
    literal = typing.get_args(anthropic.types.Model)[0]
    for model_id in typing.get_args(literal):
        assert get_model(model_id).id == resolve(model_id)


def test_dated_aliases_resolve_to_canonical_ids():
    assert resolve("claude-haiku-4-5-20251001") == "claude-haiku-4-5"
    assert resolve("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert resolve("claude-opus-4-5-20251101") == "claude-opus-4-5"
    assert resolve("claude-opus-4-8") == "claude-opus-4-8"
    assert get_model("claude-3-5-haiku-20241022").display_name == "Claude Haiku 3.5"


def test_unknown_model_is_one_error_class_with_a_suggestion():
    with pytest.raises(UnknownModelError, match="Did you mean 'claude-opus-4-8'") as info:
        get_model("claude-opus-4-9")
    assert info.value.model == "claude-opus-4-9"
    assert pricing.UnknownModelError is UnknownModelError


def test_all_models_newest_first_and_filtered_by_lifecycle():
    models = all_models()
    assert [m.created_at for m in models] == sorted((m.created_at for m in models), reverse=True)
    assert len(models) == 23
    retired = {m.id for m in all_models(["retired"])}
    assert retired == {"claude-opus-4-0", "claude-sonnet-4-0", "claude-opus-4-1", "claude-3-5-haiku-latest"}
    listed = all_models(catalog.DEFAULT_LIFECYCLES)
    assert retired.isdisjoint(m.id for m in listed) and len(listed) == 19
    with pytest.raises(ValueError, match="lifecycle"):
        all_models(["gone"])


def test_prefill_only_before_4_6():
    for model in all_models():
        assert model.supports_prefill == (model.id in AT_MOST_4_5), model.id


def test_thinking_types_follow_the_documented_rules():
    for model in all_models():
        has_thinking = model.id != "claude-3-5-haiku-latest"
        assert model.supports_thinking("enabled") == (has_thinking and model.id not in AT_LEAST_4_7), model.id
        assert model.supports_thinking("adaptive") == (model.id not in AT_MOST_4_5), model.id
        if model.line in ("fable", "mythos"):
            assert not model.supports_thinking("disabled"), model.id
        assert model.new_tokenizer == (model.id in AT_LEAST_4_7), model.id


def test_limits_and_cache_minimums():
    opus = get_model("claude-opus-4-5")
    assert (opus.max_input_tokens, opus.max_tokens, opus.min_cacheable_tokens) == (200_000, 64_000, 4096)
    assert get_model("claude-sonnet-4-6").min_cacheable_tokens == 1024
    assert get_model("claude-mythos-preview").min_cacheable_tokens == 2048
    assumed = {m.id for m in all_models() if m.min_cacheable_assumed}
    assert assumed == {
        "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-fable-5-1", "claude-mythos-5-1",
        "claude-fable-5-2", "claude-mythos-5-2",
    }  # fmt: skip
    assert get_model("claude-sonnet-4-5").context_1m_beta == "context-1m-2025-08-07"


def test_model_info_json_parses_as_the_sdk_type():
    for model in all_models():
        wire = model_info_json(model)
        parsed = SDKModelInfo.model_validate(wire)
        assert parsed.id == model.id and parsed.line == model.line
        assert parsed.created_at == model.created_at
        assert parsed.capabilities is not None
        assert parsed.capabilities.thinking.types.adaptive.supported == model.supports_thinking("adaptive")
        assert parsed.capabilities.structured_outputs.supported == model.supports("structured_outputs")
    wire = model_info_json(get_model("claude-opus-5"))
    assert wire["created_at"] == "2026-07-24T00:00:00Z"
    assert wire["capabilities"]["thinking"]["types"]["enabled"] == {"supported": False}
    retired = model_info_json(get_model("claude-opus-4-0"))
    assert retired["lifecycle"] == "retired" and retired["retires_at"] == "2026-06-15T00:00:00Z"


def test_unknown_capability_is_an_error():
    with pytest.raises(ValueError, match="capability"):
        get_model("claude-opus-5").supports("telepathy")
