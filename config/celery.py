"""The Celery application; configuration comes from Django settings (CELERY_* names)."""

import logging
import os

from celery import Celery

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
    except Exception:  # any broker failure
        logger.warning("Could not enqueue %s; a sweep will pick the work up.", task.name, exc_info=True)
        return False
    return True


# Celery's Django fixup closes the database connection around every task unless this is set; delivery tasks
# are many and short, so a new PostgreSQL session each was most of their cost (bench/deliveries.py). With it,
# a worker keeps its connection for this many tasks (×2); CONN_HEALTH_CHECKS replaces a broken one.
app.conf.CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "100"))
