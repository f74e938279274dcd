"""Notification digests: one e-mail per address per digest, grouped by category, never twice, never lost."""

import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection, transaction
from django.utils import timezone

from automations import exceptions, notifications
from automations.choices import ExceptionStatus
from automations.engine_settings import engine_settings
from automations.engines import exceptions as engine
from automations.models import EngineSettings, SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import Integration
from organizations.models import Organization


def set_engine(org, **values):
    engine_settings(org)
    EngineSettings.objects.filter(organization=org).update(**values)


def storm(org, kind, count, integration=None, prefix="E"):
    """
    `count` open exceptions of one kind in one INSERT (as a burst of raise_exception calls leaves them), on
    products: order exceptions of orders that do not exist would be resolved by the sweep before the digest.
    """
    SyncException.objects.bulk_create(
        SyncException(
            organization=org,
            integration=integration,
            kind=kind,
            entity_type="product",
            entity_id=f"{prefix}{i}",
            message=f"Order {prefix}{i}: {kind} in {org.name}",
        )
        for i in range(count)
    )


def mails_to(outbox):
    return {tuple(m.to): m for m in outbox}


def test_a_storm_of_a_thousand_exceptions_sends_one_mail(org, integration, mailoutbox):
    storm(org, ExceptionKind.UNMAPPED_SKU, 700, integration)
    storm(org, ExceptionKind.UNMAPPED_SHIPPING_METHOD, 200, integration, prefix="M")
    storm(org, ExceptionKind.UNROUTABLE_ORDER, 100, integration)

    counts = engine.sweep(org)

    assert (counts["mailed"], counts["notified"]) == (1, 1000)
    (message,) = mailoutbox
    assert message.to == ["ops@acme.test"]
    assert message.subject == "[Switchyard] 1000 new exceptions in Acme Outfitters"
    body = message.body
    assert "Unmapped SKU or shipping method: 900" in body and "Unroutable orders: 100" in body
    assert "Unmapped SKU: 700" in body and "Unmapped shipping method: 200" in body
    assert "/admin/automations/syncexception/?status__exact=open&kind__exact=unmapped_sku" in body
    assert body.count("\n  * ") == 20 + 20  # at most 20 examples per category
    assert "... and 880 more" in body and "... and 80 more" in body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and "<h3" in html and "Acme web shop" in html
    assert not SyncException.objects.filter(notified_at__isnull=True).exists()


def test_only_switched_on_categories_are_mailed(org, integration, mailoutbox):
    set_engine(org, notify_categories=["routing", "no-such-category"])
    storm(org, ExceptionKind.UNROUTABLE_ORDER, 3, integration)
    storm(org, ExceptionKind.UNMAPPED_SKU, 5, integration)

    counts = engine.sweep(org)

    assert counts["notified"] == 3
    (message,) = mailoutbox
    assert "Unroutable orders: 3" in message.body and "Unmapped" not in message.body
    # Not told yet: mailed if the category is switched on later.
    assert (
        SyncException.objects.filter(kind=ExceptionKind.UNMAPPED_SKU, notified_at__isnull=True).count() == 5
    )


def test_integration_address_else_organization_address(org, integration, warehouse_integration, mailoutbox):
    Integration.objects.filter(pk=warehouse_integration.pk).update(notification_email="3pl@partner.test")
    storm(org, ExceptionKind.DELIVERY_DEAD, 2, warehouse_integration)
    storm(org, ExceptionKind.UNMAPPED_SKU, 3, integration)  # no address of its own
    storm(org, ExceptionKind.CONNECTOR_REPORTED, 1)  # no integration at all

    engine.sweep(org)

    mails = mails_to(mailoutbox)
    assert set(mails) == {("3pl@partner.test",), ("ops@acme.test",)}
    assert mails[("3pl@partner.test",)].subject == "[Switchyard] 2 new exceptions in Acme Outfitters"
    assert "Webhook deliveries dead: 2" in mails[("3pl@partner.test",)].body
    org_mail = mails[("ops@acme.test",)].body
    assert "Unmapped SKU: 3" in org_mail and "Reported by the connector: 1" in org_mail
    assert "Webhook" not in org_mail


def test_exceptions_with_no_address_anywhere_are_marked_without_mail(org, integration, mailoutbox):
    Organization.objects.filter(pk=org.pk).update(notification_email="")
    storm(org, ExceptionKind.UNMAPPED_SKU, 4, integration)

    counts = engine.sweep(org)

    assert (counts["mailed"], counts["unaddressed"]) == (0, 4)
    assert mailoutbox == []
    assert not SyncException.objects.filter(notified_at__isnull=True).exists()


def test_a_second_digest_mails_only_what_is_new(org, integration, mailoutbox):
    storm(org, ExceptionKind.UNMAPPED_SKU, 5, integration)
    engine.run_now(org)
    exceptions.raise_exception(
        org,
        ExceptionKind.UNMAPPED_SKU,
        "again",
        integration=integration,
        entity_type="product",
        entity_id="E1",
    )

    assert engine.run_now(org)["mailed"] == 0  # a recurrence of a mailed exception is not news

    storm(org, ExceptionKind.UNROUTABLE_ORDER, 1, integration, prefix="N")
    engine.run_now(org)

    assert len(mailoutbox) == 2
    assert mailoutbox[1].subject == "[Switchyard] 1 new exception in Acme Outfitters"


def test_resolved_exceptions_are_not_mailed(org, integration, mailoutbox):
    storm(org, ExceptionKind.UNMAPPED_SKU, 2, integration)
    SyncException.objects.filter(entity_id="E0").update(status=ExceptionStatus.RESOLVED)

    engine.sweep(org)

    assert "Unmapped SKU: 1" in mailoutbox[0].body


def test_digest_waits_digest_minutes_and_run_now_does_not(org, integration, mailoutbox):
    set_engine(org, digest_minutes=15, last_digest_at=timezone.now() - timedelta(minutes=5))
    storm(org, ExceptionKind.UNMAPPED_SKU, 2, integration)

    assert engine.sweep(org)["mailed"] == 0
    assert mailoutbox == []

    assert engine.run_now(org)["mailed"] == 1
    assert EngineSettings.objects.get(organization=org).last_digest_at > timezone.now() - timedelta(minutes=1)

    storm(org, ExceptionKind.UNROUTABLE_ORDER, 1, integration)
    assert engine.sweep(org)["mailed"] == 0  # the digest just went out

    EngineSettings.objects.filter(organization=org).update(
        last_digest_at=timezone.now() - timedelta(minutes=16)
    )
    assert engine.sweep(org)["mailed"] == 1


def test_each_organization_gets_only_its_own_exceptions(
    org, other_org, integration, other_integration, mailoutbox
):
    storm(org, ExceptionKind.UNMAPPED_SKU, 30, integration)
    storm(other_org, ExceptionKind.UNMAPPED_SKU, 40, other_integration)

    engine.sweep()

    mails = mails_to(mailoutbox)
    assert set(mails) == {("ops@acme.test",), ("ops@globex.test",)}
    acme, globex = mails[("ops@acme.test",)], mails[("ops@globex.test",)]
    assert "30 new exceptions" in acme.subject and "Globex" not in acme.body + acme.alternatives[0][0]
    assert "40 new exceptions" in globex.subject and "Acme" not in globex.body + globex.alternatives[0][0]


class FailingBackend(EmailBackend):
    """The locmem backend whose sends to one address fail, like an SMTP server refusing a recipient."""

    def send_messages(self, messages):
        if any("broken" in address for m in messages for address in m.to):
            raise OSError("550 mailbox unavailable")
        return super().send_messages(messages)


def test_a_failed_send_gives_its_exceptions_back_for_the_next_digest(
    org, integration, warehouse_integration, settings, mailoutbox
):
    settings.EMAIL_BACKEND = "tests.automations.test_digest.FailingBackend"
    Integration.objects.filter(pk=warehouse_integration.pk).update(notification_email="broken@partner.test")
    storm(org, ExceptionKind.DELIVERY_DEAD, 2, warehouse_integration)
    storm(org, ExceptionKind.UNMAPPED_SKU, 3, integration)

    counts = engine.run_now(org)

    assert (counts["mailed"], counts["mail_failed"], counts["notified"]) == (1, 1, 3)
    assert [m.to for m in mail.outbox] == [["ops@acme.test"]]
    assert SyncException.objects.filter(notified_at__isnull=True).count() == 2

    Integration.objects.filter(pk=warehouse_integration.pk).update(notification_email="3pl@partner.test")
    engine.run_now(org)

    assert [m.to for m in mail.outbox] == [["ops@acme.test"], ["3pl@partner.test"]]
    assert "Webhook deliveries dead: 2" in mail.outbox[1].body


def test_digest_query_count_does_not_grow_with_exceptions(
    org, integration, django_assert_max_num_queries, mailoutbox
):
    storm(org, ExceptionKind.UNMAPPED_SKU, 300, integration)
    storm(org, ExceptionKind.UNROUTABLE_ORDER, 300, integration)
    org_settings = engine_settings(org)

    # last_digest_at, the claim (4 with its savepoint), addresses, examples: not one per exception.
    with django_assert_max_num_queries(7):
        notifications.send_digest(org, org_settings, timezone.now())

    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_overlapping_digests_never_mail_an_exception_twice(org, integration, mailoutbox):
    # Given 500 new exceptions and two sweeps started together (each claims with SKIP LOCKED)
    storm(org, ExceptionKind.UNMAPPED_SKU, 500, integration)
    barrier = threading.Barrier(2)
    errors = []

    def sweep():
        try:
            barrier.wait()
            engine.run_now(org.pk)
        except Exception as error:  # surfaced below: a thread's exception is otherwise lost
            errors.append(error)
        finally:
            connection.close()

    # When both run
    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every exception was told of exactly once, in as many mails as sweeps that claimed some
    assert errors == []
    told = [int(n) for m in mail.outbox for n in re.findall(r"^  - Unmapped SKU: (\d+)", m.body, re.M)]
    assert sum(told) == 500
    assert 1 <= len(mail.outbox) <= 2
    assert not SyncException.objects.filter(notified_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_digest_skips_rows_another_digest_is_claiming_instead_of_waiting(org, integration, mailoutbox):
    # Given a digest that claimed every row and has not committed yet
    storm(org, ExceptionKind.UNMAPPED_SKU, 50, integration)
    claimed, release = threading.Event(), threading.Event()
    result = {}

    def slow_digest():
        try:
            with transaction.atomic():
                result["claimed"] = len(
                    notifications.claim(org.pk, [ExceptionKind.UNMAPPED_SKU], timezone.now())
                )
                claimed.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_digest)
    thread.start()
    assert claimed.wait(10)

    # When another sweep runs meanwhile
    try:
        counts = engine.run_now(org)
    finally:
        release.set()
        thread.join()

    # Then it neither waited for the locks nor mailed the rows being claimed
    assert result["claimed"] == 50
    assert (counts["mailed"], counts["notified"]) == (0, 0)
    assert mailoutbox == []
    assert not SyncException.objects.filter(notified_at__isnull=True).exists()
