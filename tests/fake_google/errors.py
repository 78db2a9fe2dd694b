"""Google's JSON error bodies, as the Calendar API's "Handle API errors" guide shows them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# google.rpc canonical codes that Google puts in `error.status` next to the HTTP code.
_CANONICAL_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "NOT_FOUND",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answer of the API; raised anywhere inside a call, turned into Google's JSON body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location is not None:
            detail["locationType"] = self.location_type or "parameter"
            detail["location"] = self.location
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [detail],
                "status": _CANONICAL_STATUS.get(self.code, "UNKNOWN"),
            }
        }

    def json_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


def bad_request(message: str, *, reason: str = "invalid", location: str | None = None) -> ApiError:
    return ApiError(400, reason, message, location=location)


def not_found() -> ApiError:
    return ApiError(404, "notFound", "Not Found")


def invalid_credentials() -> ApiError:
    return ApiError(401, "authError", "Invalid Credentials", location="Authorization", location_type="header")


def login_required() -> ApiError:
    return ApiError(401, "required", "Login Required", location="Authorization", location_type="header")


def duplicate() -> ApiError:
    return ApiError(409, "duplicate", "The requested identifier already exists.")


def deleted() -> ApiError:
    return ApiError(410, "deleted", "Resource has been deleted")


def full_sync_required() -> ApiError:
    return ApiError(
        410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.", domain="calendar"
    )


def time_range_empty(location: str = "timeMax") -> ApiError:
    return ApiError(
        400, "timeRangeEmpty", "The specified time range is empty.", domain="calendar", location=location
    )


def condition_not_met() -> ApiError:
    return ApiError(
        412, "conditionNotMet", "Precondition Failed", location="If-Match", location_type="header"
    )


def rate_limit_exceeded() -> ApiError:
    return ApiError(403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")


def user_rate_limit_exceeded() -> ApiError:
    return ApiError(403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits")


def quota_exceeded() -> ApiError:
    return ApiError(403, "quotaExceeded", "Calendar usage limits exceeded.", domain="usageLimits")


def too_many_requests() -> ApiError:
    return ApiError(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")


def backend_error() -> ApiError:
    return ApiError(500, "backendError", "Backend Error")


def service_unavailable() -> ApiError:
    return ApiError(503, "backendError", "Service Unavailable")


def fault_error(kind: str) -> ApiError:
    """The error a fault rule injects, by a short name tests use."""
    factories: dict[str, Callable[[], ApiError]] = {
        "429": too_many_requests,
        "rateLimitExceeded": rate_limit_exceeded,
        "userRateLimitExceeded": user_rate_limit_exceeded,
        "quotaExceeded": quota_exceeded,
        "500": backend_error,
        "503": service_unavailable,
    }
    if kind not in factories:
        raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(factories)}")
    return factories[kind]()
