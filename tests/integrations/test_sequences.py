"""
`sequence` numbers follow commit order (#16, item 2): a counter's row stays locked by the transaction that took
a number until it ends, so a second writer of the same object waits, then numbers after it — or takes the very
number the first one gave back by rolling back.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from integrations.webhooks import sequences

pytestmark = pytest.mark.django_db(transaction=True)


def race(key, *, first_commits: bool) -> dict:
    """A first transaction takes a number and holds it; a second asks meanwhile; then the first ends."""
    taken, holding, done = {}, threading.Event(), threading.Event()

    def first():
        try:
            with transaction.atomic():
                taken["first"] = sequences.take([key])[key]
                holding.set()
                done.wait(10)
                if not first_commits:
                    transaction.set_rollback(True)
        finally:
            connection.close()

    def second():
        try:
            holding.wait(10)
            with transaction.atomic():
                taken["second"] = sequences.take([key])[key]
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    holding.wait(10)
    time.sleep(0.5)
    taken["second_waited"] = "second" not in taken  # still blocked behind the first's row lock
    done.set()
    for thread in threads:
        thread.join(20)
    return taken


def test_a_second_writer_of_an_object_waits_and_numbers_after_the_first(integration):
    key = (integration.pk, "order", "1")

    taken = race(key, first_commits=True)

    assert taken == {"first": [1], "second": [2], "second_waited": True}


def test_a_number_given_back_by_a_rollback_is_taken_by_the_next_writer(integration):
    key = (integration.pk, "order", "1")

    taken = race(key, first_commits=False)

    assert taken == {"first": [1], "second": [1], "second_waited": True}


def test_objects_and_integrations_count_apart_and_several_numbers_come_in_order(
    integration, other_integration
):
    keys = [
        (integration.pk, "order", "1"),
        (integration.pk, "order", "2"),
        (other_integration.pk, "order", "1"),
    ]

    with transaction.atomic():
        first = sequences.take([keys[0], keys[0], keys[1], keys[2]])
        again = sequences.take(keys)

    assert first == {keys[0]: [1, 2], keys[1]: [1], keys[2]: [1]}
    assert again == {keys[0]: [3], keys[1]: [2], keys[2]: [2]}
