"""The API's error envelope: `APIError` is raised by whatever answers in the API's name (the emulator, the gateway)
and rendered in one place, `APIError.body`."""

from __future__ import annotations

from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class APIError(Exception):
    """An error the API answers with: HTTP status, `error.type`, message and extra response headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.type = type or ERROR_TYPES.get(status, "api_error")
        self.message = message
        self.headers = dict(headers or {})
        self.error_code = error_code

    def body(self, request_id: str | None) -> dict[str, Any]:
        """The documented envelope: {"type":"error","error":{type,message,details},"request_id":...}."""
        details = {"error_code": self.error_code} if self.error_code else None
        return {
            "type": "error",
            "error": {"type": self.type, "message": self.message, "details": details},
            "request_id": request_id,
        }


def invalid(message: str) -> APIError:
    """A 400 invalid_request_error; messages start with the offending field path, as the API's do."""
    return APIError(400, message)
