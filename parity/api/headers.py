"""What a request's headers say about who sent it."""

from __future__ import annotations

from collections.abc import Mapping


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """`x-api-key`, else `Authorization: Bearer` (SDK ≤1.x sends the first, 2.x the second; x-api-key wins)."""
    key = headers.get("x-api-key")
    if key is not None and key.strip():
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None
