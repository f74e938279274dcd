"""After-commit work that a transaction needs once however many of its writes ask for it."""

from django.db import connection, transaction


def on_commit_once(callback) -> None:
    """`transaction.on_commit(callback)` unless an equal callback is already waiting for this commit."""
    if connection.in_atomic_block and any(waiting == callback for _, waiting, _ in connection.run_on_commit):
        return
    transaction.on_commit(callback)
