"""
The error shape every answer shares (the connector contract's `{"error": {code, message, details}}`), its
catalogue of codes, and the base of the domain's errors. A service raises a `DomainError` subclass naming its
API code; the API layer translates it in one place (api/errors.py), the admin shows its message.
"""

from core.request_id import current_request_id

# code → HTTP status: every code the API answers. The table of docs/connectors/10-errors.md lists them all
# (tests/api/test_error_table.py compares the two both ways).
CODES = {
    "validation_error": 400,
    "invalid_key": 401,
    "key_expired": 401,
    "key_revoked": 401,
    "missing_grant": 403,
    "integration_disabled": 403,
    "workflow_disabled": 403,
    "ip_not_allowed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "idempotency_in_progress": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "idempotency_conflict": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "service_unavailable": 503,
}


def error_body(code, message, details=None):
    error = {"code": code, "message": message, "details": details or {}}
    if (request_id := current_request_id()) is not None:
        # The answer's X-Request-Id, to quote to support (core/request_id.py).
        error["request_id"] = request_id
    return {"error": error}


class DomainError(Exception):
    """
    A refusal by the domain that the caller can act on, carrying its answer in the contract: `api_code` (one
    of CODES; a class declares its usual one, an instance may name another), `message` for a person and
    `details` ({field: [messages]}, or the facts a client needs, e.g. {"required": [...]}). The HTTP `status`
    follows from the code.

    The code is `api_code`, not `code`, because a domain error may also be a Django ValidationError (the
    admin's forms take those), whose `code` is its own. Arguments beyond these go to such a second base.
    """

    api_code: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if getattr(cls, "api_code", None) not in CODES:
            raise TypeError(f"{cls.__name__} declares no api_code of the catalogue (core.errors.CODES)")

    def __init__(self, message, *args, api_code=None, details=None, **kwargs):
        super().__init__(message, *args, **kwargs)
        if api_code is not None:
            if api_code not in CODES:
                raise ValueError(f"Unknown API error code {api_code!r}")
            self.api_code = api_code
        self.message = message
        self.details = details or {}

    @property
    def status(self) -> int:
        return CODES[self.api_code]
