"""
The webhook doorbells: how committed work wakes the tasks that do it. PostgreSQL is the queue, the broker only
a doorbell: a message makes a task start sooner, the task claims its rows from the database, and a beat
sweeper rings again for whatever a lost message left behind. The tasks sit above this module (in
integrations.tasks), so they are named, not imported.
"""

import math

from django.conf import settings

from core.queue import answer_doorbell as celery_answer_doorbell
from core.queue import enqueue, enqueue_once
from core.transactions import on_commit_once

DISPATCH_TASK = "integrations.tasks.dispatch_outbox_task"
DELIVER_TASK = "integrations.tasks.deliver_due_task"
MAX_PARALLEL_TASKS = 4  # delivery tasks rung at once for a burst (each claims WEBHOOK_BATCH_SIZE)


def ring(deliveries: int = 1, *, countdown: float | None = None) -> None:
    """Wake enough delivery tasks for `deliveries` rows (at most MAX_PARALLEL_TASKS)."""
    tasks = min(max(1, math.ceil(deliveries / settings.WEBHOOK_BATCH_SIZE)), MAX_PARALLEL_TASKS)
    for _ in range(tasks):
        enqueue(DELIVER_TASK, countdown=countdown)


# While a rung dispatch has not started yet, further commits need not ring again: the task claims every
# row committed before it starts. The flag expires on its own, so a lost message costs at most this long
# (and the sweeper is there anyway).
DOORBELL_KEY = "integrations:dispatch-rung"
DOORBELL_TTL = 10


def _dispatch_soon() -> None:
    enqueue_once(DISPATCH_TASK, DOORBELL_KEY, ttl=DOORBELL_TTL)


def answer_doorbell() -> None:
    """Called by the dispatch task before it claims rows, so commits from now on ring again."""
    celery_answer_doorbell(DOORBELL_KEY)


def schedule_dispatch() -> None:
    """After the current transaction commits, turn its outbox rows into deliveries (once per transaction)."""
    on_commit_once(_dispatch_soon)
