"""The Celery application; configuration comes from Django settings (CELERY_* names)."""

import logging
import os

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("switchyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

# Celery's Django fixup closes the database connection around every task unless this is set; delivery tasks
# are many and short, so a new PostgreSQL session each was most of their cost (bench/deliveries.py). With it,
# a worker keeps its connection for this many tasks (×2); CONN_HEALTH_CHECKS replaces a broken one.
app.conf.CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "100"))


def _closed_broker_connection_is_a_connection_error() -> None:
    """
    Celery 5.7 / kombu 5.7 worker, Redis broker: when the broker connection is lost, the consumer collects
    the connection (which drops its transport) and then closes it, and closing a channel still open asks
    the dropped transport for its address to restore the unacknowledged messages — an AttributeError the
    worker does not expect, so it stops ("Unrecoverable error: 'NoneType' object has no attribute
    'hostname'"; seen in tests/faults/test_redis_down.py). Raised as the connection error it is, it is
    ignored like the others on that path and the worker reconnects once Redis is back; the messages it could
    not restore stay in Redis' unacked set until the visibility timeout, and the beat sweeps do the work
    meanwhile (every task here is idempotent). Remove once kombu handles it.
    """
    try:
        import redis
        from kombu.transport import redis as kombu_redis
    except ImportError:  # no Redis transport installed
        return
    connparams = kombu_redis.Channel._connparams
    if getattr(connparams, "guarded", False):
        return

    def guarded(self, asynchronous=False):
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("The broker connection has been closed.")
        return connparams(self, asynchronous=asynchronous)

    guarded.guarded = True
    kombu_redis.Channel._connparams = guarded


_closed_broker_connection_is_a_connection_error()


@task_postrun.connect
def drop_broken_connections(**kwargs) -> None:
    """
    After a task that met a database error, close the connection if it no longer works — what Django does
    at the end of a request. The reuse above otherwise keeps a connection PostgreSQL cut off (a restart,
    a failover) for up to CELERY_DB_REUSE_MAX more tasks, each failing; the next task connects afresh.
    """
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.errors_occurred:
            try:
                connection.close_if_unusable_or_obsolete()
            except Exception:  # closing a connection the server already dropped
                logger.warning("Could not close a broken database connection.", exc_info=True)
