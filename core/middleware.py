"""
A database outage answers 503, not 500: while PostgreSQL is down or restarting, every request that needs it
fails fast with a clean answer and a Retry-After — the API's error shape under /api/, a plain page elsewhere
(the admin) — and the same web processes serve again once it is back (CONN_HEALTH_CHECKS reconnects).

DRF views answer it in api.errors.exception_handler; this middleware covers the rest of a view
(Django views, the admin, a write in DRF's finalize_response) and api.errors.handler500 covers
what fails outside a view (a session saved after the response was made).
"""

import logging

from django import db
from django.http import HttpResponse, JsonResponse

from core.errors import error_body

logger = logging.getLogger("switchyard.unavailable")

RETRY_AFTER = 5  # seconds: a restart of PostgreSQL takes about this long
API_MESSAGE = (
    f"The service is briefly unavailable (its database cannot be reached); retry in {RETRY_AFTER} s."
)
PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Service unavailable</title>"
    "<h1>Service unavailable</h1><p>Switchyard cannot reach its database right now. "
    "Try again in a few seconds.</p></html>"
)


def database_unavailable(exc: BaseException | None) -> bool:
    """
    Whether `exc` says the database cannot be reached (refused, cut off, shutting down, starting up), as
    opposed to a query the database refused: only those are an outage, answered 503.
    """
    if isinstance(exc, db.InterfaceError):
        return True  # the connection is closed or broken
    if isinstance(exc, db.OperationalError):
        # psycopg's own error is the cause: no SQLSTATE is a client-side connection failure, class 08 a
        # connection exception, 57P01-3 the server shutting down, crashed or not yet accepting connections.
        # SQLite's errors carry no sqlstate attribute at all and are not outages.
        sqlstate = getattr(exc.__cause__, "sqlstate", "")
        return sqlstate is None or sqlstate.startswith(("08", "57P0"))
    return False


def unavailable_response(request) -> HttpResponse:
    headers = {"Retry-After": str(RETRY_AFTER)}
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("service_unavailable", API_MESSAGE), status=503, headers=headers)
    # No template: rendering one runs context processors that would ask the database for the user.
    return HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8", headers=headers)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not database_unavailable(exception):
            return None
        logger.warning("Database unavailable for %s %s: %s", request.method, request.path, exception)
        return unavailable_response(request)
