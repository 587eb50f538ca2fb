"""GET /v1/models and /v1/models/{id} through the SDK: the catalogue, pagination both ways, lifecycle filter, 404."""

from __future__ import annotations

import anthropic
import pytest

from parity import catalog

from .conftest import headers


def listed_ids(lifecycles=catalog.DEFAULT_LIFECYCLES) -> list[str]:
    return [m.id for m in catalog.all_models(lifecycles)]


def test_auto_pagination_walks_the_whole_catalogue_newest_first(client):
    page = client.models.list(limit=3)
    assert (
        len(page.data) == 3 and page.has_more and page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    )
    assert [m.id for m in page] == listed_ids()  # auto-paging follows after_id = last_id to the end
    assert "claude-3-5-haiku-latest" not in listed_ids()  # retired models are hidden by default


def test_model_info_shape(client):
    first = client.models.list(limit=1).data[0]
    assert first.type == "model" and first.display_name and first.created_at
    assert first.lifecycle in ("active", "deprecated")
    info = client.models.retrieve("claude-opus-4-8")
    assert info.id == "claude-opus-4-8" and info.max_tokens == catalog.get_model("claude-opus-4-8").max_tokens
    assert info.capabilities.thinking.types.adaptive.supported is True
    assert info.capabilities.thinking.types.enabled.supported is False


def test_before_id_pages_backwards(client):
    ids = listed_ids()
    back = client.models.list(before_id=ids[5], limit=2)
    assert [m.id for m in back.data] == ids[3:5] and back.has_more
    assert [m.id for m in client.models.list(before_id=ids[2], limit=10).data] == ids[:2]
    assert client.models.list(before_id=ids[2], limit=10).has_more is False


def test_lifecycle_filter(raw):
    response = raw.get("/v1/models", params={"lifecycle[]": ["retired"], "limit": 1000}, headers=headers())
    assert response.status_code == 200
    retired = [m["id"] for m in response.json()["data"]]
    assert retired == listed_ids(("retired",)) and "claude-3-5-haiku-latest" in retired
    everything = raw.get(
        "/v1/models", params={"lifecycle[]": ["active", "deprecated", "retired"], "limit": 1000}, headers=headers()
    )
    assert len(everything.json()["data"]) == len(catalog.all_models())


def test_retrieve_alias_and_unknown(client):
    assert client.models.retrieve("claude-haiku-4-5-20251001").id == "claude-haiku-4-5"
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("claude-nope")
    assert info.value.body["error"]["message"] == "model: claude-nope"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"limit": 1001}, "limit: Input should be less than or equal to 1000"),
        ({"limit": "many"}, "limit: Input should be a valid integer"),
        ({"after_id": "claude-nope"}, "after_id: no model 'claude-nope'"),
        ({"after_id": "claude-opus-4-8", "before_id": "claude-opus-4-7"}, "after_id, before_id: pass at most one"),
        ({"lifecycle[]": "immortal"}, "lifecycle: Input should be"),
    ],
)
def test_bad_list_parameters(raw, params, message):
    response = raw.get("/v1/models", params=params, headers=headers())
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)
