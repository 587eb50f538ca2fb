"""GET /v1/models and /v1/models/{id} (reference §9.1) from the model catalogue, with the API's pagination (§8.3).

Newest first. `after_id` pages forward (older models), `before_id` back; `has_more` says whether more exist in the
direction asked; `first_id`/`last_id` are the page's ends. `lifecycle[]` filters (default: active + deprecated).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams

from parity import catalog
from parity.api.errors import APIError, invalid

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(
            f"limit: Input should be a valid integer, unable to parse string as an integer, got {raw!r}"
        ) from None
    if limit < 1:
        raise invalid("limit: Input should be greater than or equal to 1")
    if limit > MAX_LIMIT:
        raise invalid(f"limit: Input should be less than or equal to {MAX_LIMIT}")
    return limit


def _lifecycles(query: QueryParams) -> tuple[str, ...]:
    values = [v for key in ("lifecycle[]", "lifecycle") for v in query.getlist(key)]
    if not values:
        return catalog.DEFAULT_LIFECYCLES
    for value in values:
        if value not in catalog.LIFECYCLES:
            raise invalid(f"lifecycle: Input should be {', '.join(repr(x) for x in catalog.LIFECYCLES)}, got {value!r}")
    return tuple(dict.fromkeys(values))


def list_models(query: QueryParams) -> dict[str, Any]:
    """One page of ModelInfo objects, newest first."""
    limit = _limit(query.get("limit"))
    after_id, before_id = query.get("after_id") or None, query.get("before_id") or None
    if after_id and before_id:
        raise invalid("after_id, before_id: pass at most one cursor (after_id pages forward, before_id back)")
    models = catalog.all_models(_lifecycles(query))
    ids = [m.id for m in models]

    def position(name: str, cursor: str) -> int:
        try:
            return ids.index(catalog.resolve(cursor))
        except (catalog.UnknownModelError, ValueError):
            raise invalid(
                f"{name}: no model {cursor!r} in this listing; pass the first_id or last_id of a page"
            ) from None

    if after_id:
        rest = models[position("after_id", after_id) + 1 :]
        page, has_more = rest[:limit], len(rest) > limit
    elif before_id:
        rest = models[: position("before_id", before_id)]
        page, has_more = rest[-limit:], len(rest) > limit
    else:
        page, has_more = models[:limit], len(models) > limit
    return {
        "data": [catalog.model_info_json(m) for m in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


def retrieve_model(model_id: str) -> dict[str, Any]:
    """One ModelInfo; a dated alias resolves to its model, as the API's do. 404 for an unknown id."""
    try:
        return catalog.model_info_json(catalog.get_model(model_id))
    except catalog.UnknownModelError:
        raise APIError(404, f"model: {model_id}") from None
