"""
config.celery.drop_broken_connections: a worker that keeps its database connection across tasks
(CELERY_DB_REUSE_MAX) drops one PostgreSQL cut off, as Django does at the end of a request, so the next task
connects afresh instead of failing on it (tests/faults/test_postgres_restart.py restarts a real server).
"""

import pytest
from django.db import connections

from config.celery import drop_broken_connections


@pytest.fixture
def connection():
    return connections["default"]  # the wrapper itself, not django.db.connection's proxy (patched below)


@pytest.fixture
def closes(monkeypatch, connection):
    closed = []
    monkeypatch.setattr(type(connection), "close", lambda self: closed.append(self.alias))
    # As between a worker's tasks (the test's own transaction would otherwise count as left open), and
    # not yet CONN_MAX_AGE old (the suite's connection may be).
    monkeypatch.setattr(type(connection), "get_autocommit", lambda self: True)
    monkeypatch.setattr(connection, "close_at", None)
    return closed


@pytest.mark.django_db
def test_a_connection_that_met_an_error_and_no_longer_works_is_closed(monkeypatch, closes, connection):
    connection.ensure_connection()
    monkeypatch.setattr(connection, "errors_occurred", True)
    monkeypatch.setattr(type(connection), "is_usable", lambda self: False)

    drop_broken_connections()

    assert closes == ["default"]


@pytest.mark.django_db
def test_a_connection_that_met_an_error_but_works_is_kept(monkeypatch, closes, connection):
    connection.ensure_connection()
    monkeypatch.setattr(connection, "errors_occurred", True)
    monkeypatch.setattr(type(connection), "is_usable", lambda self: True)

    drop_broken_connections()

    assert closes == []
    assert connection.errors_occurred is False


@pytest.mark.django_db
def test_a_connection_without_errors_is_not_checked(monkeypatch, closes, connection):
    connection.ensure_connection()
    checked = []
    monkeypatch.setattr(type(connection), "is_usable", lambda self: checked.append(1) or False)

    drop_broken_connections()

    assert (closes, checked) == ([], [])


def test_a_broker_channel_whose_connection_was_closed_raises_a_connection_error():
    # (config.celery's guard: the worker's close-after-connection-loss path ignores connection errors only)
    from types import SimpleNamespace

    import redis
    from kombu.transport.redis import Channel

    closed = SimpleNamespace(connection=SimpleNamespace(client=None))  # what Connection.collect() leaves

    with pytest.raises(redis.exceptions.ConnectionError):
        Channel._connparams(closed)
