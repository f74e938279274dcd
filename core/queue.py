"""
Publishing Celery tasks without waiting on the broker, and doorbells (a task rung once per burst of work).
The work itself is always claimed from the database; a message only makes it start sooner.
"""

import logging
from importlib import import_module

from celery import current_app
from django.core.cache import cache

logger = logging.getLogger(__name__)

# Options of every task whose work is claimed in the database: acknowledged after it ran, given back if the
# worker dies mid-task (prefetch 1 is global, config/settings.py). Repeating them is harmless: idempotent.
RELIABLE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


def enqueue(task, **options) -> bool:
    """
    Publish `task` (a task, or a registered task's name such as "automations.tasks.route_order_task": naming it
    lets a module below the tasks module ask for it without importing it) without retrying. With the broker down, the work stays in the database, where a beat sweep finds
    it; waiting on a dead broker would only stall the request or task that asked.
    """
    if isinstance(task, str):
        task = task_named(task)
    try:
        task.apply_async(retry=False, **options)
    except Exception as exc:  # any broker failure
        # No traceback: during an outage every request and task would log one; the message says it all.
        logger.warning("Could not enqueue %s (%s); a sweep will pick the work up.", task.name, exc)
        return False
    return True


def task_named(name: str):
    """
    The registered task `name` ("app.tasks.function"). Celery registers a task when its module is imported,
    which a web process may never have done: the module is imported here then (by name, as Celery's own
    autodiscovery does), so naming a task never depends on who imported what before.
    """
    if name not in current_app.tasks:
        import_module(name.rsplit(".", 1)[0])
    return current_app.tasks[name]


def enqueue_once(task, key: str, *, ttl: int = 10, **options) -> bool:
    """
    A doorbell: enqueue unless a task rung with the same `key` has not started yet (it will see this work
    too). The task calls `answer_doorbell(key)` before it looks, so later changes ring again. The flag
    expires after `ttl` seconds, so a lost message costs at most that long (and the beat sweeps are there).
    """
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
    try:
        cache.delete(key)
    except Exception as exc:
        logger.warning("Cache unavailable for the doorbell %s (%s).", key, exc)
