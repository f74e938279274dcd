"""
A database outage answers 503 (core/middleware.py, api/errors.py): which errors count as an outage,
and the answers — the API's error shape with Retry-After, a plain page elsewhere. tests/faults proves it
with a real PostgreSQL restart; these pin the classification and each path in-process.
"""

import sqlite3

import psycopg
import psycopg.errors
import pytest
from django import db
from django.test import RequestFactory

from api import errors
from api.authentication import BearerKeyAuthentication
from console.site import SwitchyardAdminSite
from core.middleware import RETRY_AFTER, database_unavailable
from tests.api.helpers import assert_error


def django_error(cls, cause):
    """A Django database error raised from a driver error, as Django's DatabaseErrorWrapper raises them."""
    try:
        raise cls(str(cause)) from cause
    except cls as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (
            django_error(db.OperationalError, psycopg.OperationalError("connection refused")),
            True,
        ),  # no SQLSTATE
        (
            django_error(db.OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
            True,
        ),  # admin shutdown
        (
            django_error(
                db.OperationalError, psycopg.errors.CannotConnectNow("the database system is starting up")
            ),
            True,
        ),  # cannot connect now (starting up)
        (
            django_error(db.OperationalError, psycopg.errors.ConnectionFailure("connection failure")),
            True,
        ),  # connection failure
        (django_error(db.InterfaceError, psycopg.InterfaceError("the connection is closed")), True),
        (
            django_error(db.OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
            False,
        ),  # a deadlock is a query's error
        (django_error(db.OperationalError, sqlite3.OperationalError("no such table: x")), False),
        (django_error(db.IntegrityError, psycopg.IntegrityError("duplicate key")), False),
        (ValueError("x"), False),
        (None, False),
    ],
)
def test_which_errors_are_an_outage(exc, outage):
    assert database_unavailable(exc) is outage


@pytest.mark.django_db
def test_an_api_request_during_an_outage_is_503_in_the_error_shape(api_client, monkeypatch):
    def cut_off(self, request):
        raise django_error(db.OperationalError, psycopg.OperationalError("server closed the connection"))

    monkeypatch.setattr(BearerKeyAuthentication, "authenticate", cut_off)
    client = api_client("sy_anything")
    client.raise_request_exception = False

    response = client.get("/api/v1/me")

    assert_error(response, 503, "service_unavailable")
    assert response["Retry-After"] == str(RETRY_AFTER)


def test_an_admin_page_during_an_outage_is_a_plain_503_page(admin_client, monkeypatch):
    def cut_off(self, request):
        raise django_error(db.OperationalError, psycopg.OperationalError("connection refused"))

    # Looked up on each request (the URLconf holds bound views made once): the user's session, read here.
    monkeypatch.setattr(SwitchyardAdminSite, "has_permission", cut_off)
    admin_client.raise_request_exception = False

    response = admin_client.get("/admin/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"Service unavailable" in response.content
    assert response["Retry-After"] == str(RETRY_AFTER)


@pytest.mark.parametrize(
    ("path", "content_type"), [("/api/v1/orders", "application/json"), ("/admin/", "text/html")]
)
def test_an_outage_outside_any_view_is_503_too(path, content_type):
    request = RequestFactory().get(path)
    try:  # handler500 runs while Django handles the exception (a session saved after the view, say)
        raise django_error(db.OperationalError, psycopg.OperationalError("connection refused"))
    except db.OperationalError:
        response = errors.handler500(request)

    assert response.status_code == 503 and response["Content-Type"].startswith(content_type)


def test_another_error_outside_a_view_is_still_500():
    request = RequestFactory().get("/api/v1/orders")
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        response = errors.handler500(request)

    assert response.status_code == 500
