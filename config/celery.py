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

# Options of every task whose work is claimed in the database: acknowledged after it ran, given back if the
# worker dies mid-task (prefetch 1 is global, config/settings.py). Repeating them is harmless: idempotent.
RELIABLE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


def enqueue(task, **options) -> bool:
    """
    Publish without retrying. With the broker down, the work stays in the database, where a beat sweep finds
    it; waiting on a dead broker would only stall the request or task that asked.
    """
    try:
        task.apply_async(retry=False, **options)
    except Exception as exc:  # any broker failure
        # No traceback: during an outage every request and task would log one; the message says it all.
        logger.warning("Could not enqueue %s (%s); a sweep will pick the work up.", task.name, exc)
        return False
    return True


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


def enqueue_once(task, key: str, *, ttl: int = 10, **options) -> bool:
    """
    A doorbell: enqueue unless a task rung with the same `key` has not started yet (it will see this work
    too). The task calls `answer_doorbell(key)` before it looks, so later changes ring again. The flag
    expires after `ttl` seconds, so a lost message costs at most that long (and the beat sweeps are there).
    """
    from django.core.cache import cache

    try:
        if not cache.add(key, 1, timeout=ttl):
            return False  # one is on its way
    except Exception as exc:  # the cache down: ring anyway, a duplicate task is harmless
        logger.warning("Cache unavailable for the doorbell %s (%s).", key, exc)
    if enqueue(task, **options):
        return True
    answer_doorbell(key)
    return False


def answer_doorbell(key: str) -> None:
    from django.core.cache import cache

    try:
        cache.delete(key)
    except Exception as exc:
        logger.warning("Cache unavailable for the doorbell %s (%s).", key, exc)
