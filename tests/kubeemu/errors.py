"""API errors rendered as the Kubernetes ``Status`` objects clients parse.

Clients branch on ``code`` and ``reason`` (kopf maps 404/409/422 to its own error
classes; the kubernetes client raises ``ApiException`` with the body), and operators
show ``message`` to users, so each factory below mirrors the wording of
k8s.io/apimachinery/pkg/api/errors. Nothing here knows about storage or HTTP.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


class ApiError(Exception):
    """An error that the server answers with a ``Status`` body and an HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def qualified(group: str, plural: str) -> str:
    """``deployments.apps`` for groups, ``pods`` for the core group, as in messages."""
    return f"{plural}.{group}" if group else plural


def _details(group: str, kind: str, name: str) -> Obj:
    details: Obj = {"name": name}
    if group:  # omitempty in metav1.StatusDetails
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(group, plural)} "{name}" not found',
        _details(group, plural, name),
    )


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(group, plural)} "{name}" already exists',
        _details(group, plural, name),
    )


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {why}',
        _details(group, plural, name),
    )


STALE = "the object has been modified; please apply your changes to the latest version and try again"


class Cause:
    """One ``details.causes[]`` entry: what is wrong, and where (a dotted field path)."""

    REQUIRED = "FieldValueRequired"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    TYPE = "FieldValueTypeInvalid"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    DUPLICATE = "FieldValueDuplicate"

    def __init__(self, reason: str, field: str, message: str) -> None:
        self.reason = reason
        self.field = field
        self.message = message

    def render(self) -> str:
        return f"{self.field}: {self.message}"


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, as ``errors.NewInvalid``: details.kind is the Kind, not the plural."""
    what = f"{kind}.{group}" if group else kind
    rendered = [c.render() for c in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = _details(group, kind, name)
    details["causes"] = [
        {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
    ]
    return ApiError(422, "Invalid", f'{what} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unprocessable(message: str) -> ApiError:
    """A bare 422, as ``NewGenericServerResponse(422, ...)`` for failed JSON patches."""
    return ApiError(422, "Invalid", message)


def forbidden(group: str, plural: str, name: str, why: str, cause: Obj | None = None) -> ApiError:
    details = _details(group, plural, name)
    if cause:
        details["causes"] = [cause]
    return ApiError(
        403, "Forbidden", f'{qualified(group, plural)} "{name}" is forbidden: {why}', details
    )


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str, supported: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(supported)}",
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")
