"""
Every request has an id, to quote to support: the `X-Request-Id` header of every answer, `request_id` in the
error shape (core.errors.error_body), `request_id` in the request log (api.base.record_request) and in every
log record written while the request runs (RequestIdLogFilter, on the console handler in config/settings.py).

A client may send its own `X-Request-Id` (a UUID, a trace id) to find its call in our logs under its name: it
is kept when well formed — 8 to 128 letters, digits, `.`, `_`, `:` or `-`, starting with a letter or digit —
and replaced by a new `req_…` id otherwise, so a log line never holds what a client typed beyond that set.
"""

import logging
import re
import secrets
from contextvars import ContextVar

HEADER = "X-Request-Id"
META_KEY = "HTTP_X_REQUEST_ID"
WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def current_request_id() -> str | None:
    """The id of the request this code runs for (None outside a request: a task, a command)."""
    return _current.get()


def request_id_of(request) -> str:
    """The incoming id when well formed, else a new one."""
    incoming = request.META.get(META_KEY, "")
    return incoming if WELL_FORMED.fullmatch(incoming) else new_request_id()


class RequestIdMiddleware:
    """First of the middlewares, so that every answer carries the header — a redirect, a 503, a guard's 400."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_of(request)
        token = _current.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = request.request_id
        return response


class RequestIdLogFilter(logging.Filter):
    """Gives each record `request_id`: the running request's, else the one of the request it names, else "-"."""

    def filter(self, record):
        request_id = _current.get()
        if request_id is None:
            # Django logs an error answer (django.request) after the middlewares returned, with the request.
            request_id = getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = request_id or "-"
        return True
