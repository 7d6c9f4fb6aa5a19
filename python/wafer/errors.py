"""Wafer's exceptions: one hierarchy for the online client and the in-process offline path.

Every error the server returns (``{"error": {"code", "message", ...}}``) is raised as the class its
``code`` maps to in :data:`CODES`, carrying ``code``, ``status`` (HTTP), ``message`` and ``details``
(the rest of the error body). A code this version does not know falls back on its HTTP status.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


class WaferError(Exception):
    """Base class of every Wafer error."""

    def __init__(
        self,
        message: str,
        code: Optional[str] = None,
        status: Optional[int] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]" if self.code else self.message


class InvalidRequest(WaferError):
    """The request is malformed or names something wrongly (HTTP 400)."""


class UnknownFeatures(InvalidRequest):
    """Unknown views, features or feature service (``details`` names every one)."""


class MissingEntity(InvalidRequest):
    """No key column for a view's entity."""


class RequestDataError(InvalidRequest):
    """Request data missing (``missing``) or invalid (``param``, ``row``) for a request view."""


class RequestRejected(InvalidRequest):
    """A request transform returned bad-input for an entity."""


class AuthenticationError(WaferError):
    """No, unknown or revoked credentials (HTTP 401)."""


class PermissionDenied(WaferError):
    """The credentials may not do this, or the tenant is disabled (HTTP 403)."""


class QuotaExceeded(PermissionDenied):
    """A tenant quota refused the change."""


class NotFound(WaferError):
    """No such route, view, transform or tenant (HTTP 404)."""


class Conflict(WaferError):
    """The thing already exists (HTTP 409)."""


class RateLimited(WaferError):
    """The tenant's request rate quota (HTTP 429); ``retry_after`` is in seconds when given."""

    retry_after: Optional[float] = None


class TransformRejected(InvalidRequest):
    """An uploaded transform failed validation (``code`` says which check)."""


class UploadTooLarge(TransformRejected):
    """The upload exceeds the size limit (HTTP 413)."""


class TransformFailed(WaferError):
    """A request transform trapped or failed (HTTP 500)."""


class TransformDeadline(TransformFailed):
    """A request transform ran past its deadline (HTTP 504)."""


class Unavailable(WaferError):
    """The store, registry or view is unavailable for now (HTTP 503): retry later."""

    retry_after: Optional[float] = None


class ViewPaused(Unavailable):
    """The view's circuit breaker is open (its transform fails most events)."""


class ServerError(WaferError):
    """Any other server-side failure (HTTP 5xx)."""


class OfflineError(WaferError):
    """The in-process offline path (training data, runs) could not run: the message says why."""


class LoadError(OfflineError):
    """A transform file could not be loaded (not a component, wrong world, bad imports...)."""


class BuildError(WaferError):
    """``wafer.build`` failed: the message points at the user's source line when it can."""


#: Server error code -> exception class.
CODES: Dict[str, type] = {
    # 400: the request
    "invalid_json": InvalidRequest,
    "invalid_request": InvalidRequest,
    "body_too_large": InvalidRequest,
    "invalid_name": InvalidRequest,
    "invalid_view": InvalidRequest,
    "invalid_event": InvalidRequest,
    "spine_too_large": InvalidRequest,
    "too_many_rows": InvalidRequest,
    "too_many_entities": InvalidRequest,
    "unknown_views": UnknownFeatures,
    "unknown_view": NotFound,
    "unknown_features": UnknownFeatures,
    "unknown_feature_service": UnknownFeatures,
    "missing_entity": MissingEntity,
    "missing_request_data": RequestDataError,
    "invalid_request_data": RequestDataError,
    "request_rejected": RequestRejected,
    # uploads
    "not_wasm": TransformRejected,
    "core_module_not_component": TransformRejected,
    "invalid_component": TransformRejected,
    "wrong_world": TransformRejected,
    "ambiguous_world": TransformRejected,
    "export_mismatch": TransformRejected,
    "forbidden_import": TransformRejected,
    "import_mismatch": TransformRejected,
    "describe_failed": TransformRejected,
    "invalid_describe": TransformRejected,
    "unexpected_world": TransformRejected,
    "compile_failed": TransformRejected,
    "read_failed": TransformRejected,
    "upload_too_large": UploadTooLarge,
    # 401 / 403
    "missing_credentials": AuthenticationError,
    "invalid_credentials": AuthenticationError,
    "invalid_api_key": AuthenticationError,
    "revoked_api_key": AuthenticationError,
    "forbidden": PermissionDenied,
    "tenant_disabled": PermissionDenied,
    "quota_exceeded": QuotaExceeded,
    "compile_budget_exceeded": QuotaExceeded,
    # 404 / 405 / 409 / 429
    "not_found": NotFound,
    "method_not_allowed": InvalidRequest,
    "tenant_exists": Conflict,
    "rate_limited": RateLimited,
    # 5xx
    "transform_failed": TransformFailed,
    "transform_deadline": TransformDeadline,
    "store_unavailable": Unavailable,
    "store_outcome_unknown": Unavailable,
    "registry_unavailable": Unavailable,
    "not_ready": Unavailable,
    "no_control_plane": NotFound,
    "view_paused": ViewPaused,
    "artifact_cache": ServerError,
    "no_randomness": ServerError,
}

_BY_STATUS = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: UploadTooLarge,
    429: RateLimited,
    503: Unavailable,
    504: TransformDeadline,
}


def from_response(status: int, body: Any, retry_after: Optional[str] = None) -> WaferError:
    """The exception for an HTTP error response (``body`` is the decoded JSON, if any)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        message = str(err.get("message", ""))
        details = {k: v for k, v in err.items() if k not in ("code", "message")}
    else:
        code, message, details = None, str(body)[:500], {}
    cls = CODES.get(code or "") or _BY_STATUS.get(status) or (ServerError if status >= 500 else WaferError)
    exc = cls(message or f"HTTP {status}", code=code, status=status, details=details)
    if retry_after is not None and isinstance(exc, (RateLimited, Unavailable)):
        try:
            exc.retry_after = float(retry_after)
        except ValueError:
            pass
    return exc
