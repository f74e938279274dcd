"""The Celery application; configuration comes from Django settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("switchyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Celery's Django fixup closes the database connection around every task unless this is set; delivery tasks
# are many and short, so a new PostgreSQL session each was most of their cost (bench/deliveries.py). With it,
# a worker keeps its connection for this many tasks (×2); CONN_HEALTH_CHECKS replaces a broken one.
app.conf.CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "100"))
