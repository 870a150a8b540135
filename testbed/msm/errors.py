"""The one error type the portal turns into a 4xx answer.

Kept apart so that the store, the CA and the validators can refuse input without
knowing about HTTP, and the portal never has to guess which status to send.
"""
from __future__ import annotations


class ApiError(Exception):
    """Refused input or a missing object; `field` names what was wrong.

    `reason` (issue 9) marks an authentication/authorisation refusal (no_cert, unknown_cert,
    revoked, role, not_self, not_member, token_*, csr_invalid): the portal counts it in
    `auth.refused.<reason>` and logs it with the caller's identity.
    """

    def __init__(self, status: int, field: str | None, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.reason = reason

    def to_json(self) -> dict:
        text = f"{self.field}: {self.message}" if self.field else self.message
        body: dict = {"error": text}
        if self.field or self.reason:  # a refusal always names its field, null when none (README)
            body["field"] = self.field
        if self.reason:
            body["reason"] = self.reason
        return body


def refused(status: int, reason: str, message: str, field: str | None = None) -> ApiError:
    """401 (who are you?) or 403 (not you / not allowed) with a counted `reason`."""
    return ApiError(status, field, message, reason=reason)


def bad(field: str | None, message: str) -> ApiError:
    """400: the value of `field` is malformed."""
    return ApiError(400, field, message)


def not_found(field: str | None, message: str) -> ApiError:
    """404: `field` refers to something the MSM does not know."""
    return ApiError(404, field, message)


def conflict(field: str | None, message: str) -> ApiError:
    """409: `field` would duplicate an existing object."""
    return ApiError(409, field, message)
