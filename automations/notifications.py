"""
Notification digests: the new exceptions of an organization, one e-mail per address (the integration's,
else the organization's) however many there are, grouped by category inside, over one SMTP connection.
"""

import logging
from collections import Counter, defaultdict
from urllib.parse import urlencode

from django.conf import settings as django_settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.text import Truncator

from core.sync_exceptions import ExceptionKind
from integrations.models import Integration

from .choices import CATEGORY_OF_KIND, EXCEPTION_CATEGORIES, ExceptionStatus
from .models import EngineSettings, SyncException

logger = logging.getLogger(__name__)

# Claimed per digest run (a bounded batch); any more are mailed by the next digest.
DIGEST_MAX_EXCEPTIONS = 20_000
# Listed per category in a mail; the rest are counted and one click away.
DIGEST_EXAMPLES = 20
DIGEST_EXCERPT_CHARS = 160


def notified_kinds(categories) -> list[str]:
    """The exception kinds of the categories switched on (unknown category keys are ignored)."""
    return [
        kind
        for key in categories or []
        if key in EXCEPTION_CATEGORIES
        for kind in EXCEPTION_CATEGORIES[key][1]
    ]


def send_digest(organization, engine_settings, now) -> dict:
    """
    Claim the organization's open, not yet notified exceptions of the switched-on categories, mail one
    digest per address, and un-claim what could not be sent so the next digest tries again.
    """
    EngineSettings.objects.filter(pk=engine_settings.pk).update(last_digest_at=now)
    claimed = claim(organization, notified_kinds(engine_settings.notify_categories), now)
    counts = {"mailed": 0, "notified": 0, "unaddressed": 0, "mail_failed": 0}
    if not claimed:
        return counts
    by_address = _group_by_address(organization, claimed)
    unaddressed = by_address.pop("", [])
    messages = build_messages(organization, by_address)
    sent, failed = _send(messages)
    if failed:
        # Marked at the claim, so an overlapping sweep could not take them; not sent, so given back.
        SyncException.objects.filter(pk__in=failed, notified_at=now).update(notified_at=None)
    counts.update(
        mailed=sent,
        notified=len(claimed) - len(failed),
        unaddressed=len(unaddressed),
        mail_failed=len(messages) - sent,
    )
    return counts


def claim(organization, kinds, now) -> list[tuple[int, int | None, str]]:
    """Mark up to DIGEST_MAX_EXCEPTIONS rows notified in one short transaction; rows another sweep holds
    are skipped, so two overlapping digests never mail the same exception."""
    if not kinds:
        return []
    with transaction.atomic():
        rows = list(
            SyncException.objects.filter(
                organization=organization,
                status=ExceptionStatus.OPEN,
                notified_at__isnull=True,
                kind__in=kinds,
            )
            .select_for_update(skip_locked=True)
            .order_by("pk")
            .values_list("pk", "integration_id", "kind")[:DIGEST_MAX_EXCEPTIONS]
        )
        if rows:
            SyncException.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(notified_at=now)
    return rows


def _group_by_address(organization, claimed):
    fallback = organization.notification_email
    own = dict(
        Integration.objects.filter(organization=organization)
        .exclude(notification_email="")
        .values_list("pk", "notification_email")
    )
    groups = defaultdict(list)
    for row in claimed:
        groups[own.get(row[1], fallback)].append(row)
    return groups


def build_messages(organization, by_address) -> list[tuple[EmailMultiAlternatives, list[int]]]:
    """One plain-text + HTML message per address, and the exception ids it tells of."""
    examples = _examples(by_address)
    messages = []
    for address, rows in sorted(by_address.items()):
        context = digest_context(organization, rows, examples)
        subject = (
            f"[Switchyard] {context['total']} new exception{'s' if context['total'] != 1 else ''} "
            f"in {organization.name}"
        )
        message = EmailMultiAlternatives(
            subject, render_to_string("automations/email/digest.txt", context), to=[address]
        )
        message.attach_alternative(render_to_string("automations/email/digest.html", context), "text/html")
        messages.append((message, [pk for pk, _, _ in rows]))
    return messages


def _examples(by_address) -> dict[int, SyncException]:
    """The newest DIGEST_EXAMPLES of each category of each mail, in one query."""
    wanted = []
    for rows in by_address.values():
        per_category = defaultdict(list)
        for pk, _, kind in sorted(rows, reverse=True):
            if len(per_category[CATEGORY_OF_KIND[kind]]) < DIGEST_EXAMPLES:
                per_category[CATEGORY_OF_KIND[kind]].append(pk)
        wanted += [pk for pks in per_category.values() for pk in pks]
    return SyncException.objects.select_related("integration").in_bulk(wanted)


def digest_context(organization, rows, examples) -> dict:
    """Counts per category and kind, links to the filtered admin list, and a few examples per category."""
    kinds = Counter(kind for _, _, kind in rows)
    pks_of = defaultdict(list)
    for pk, _, kind in rows:
        pks_of[CATEGORY_OF_KIND[kind]].append(pk)
    categories = []
    for key, (label, members) in EXCEPTION_CATEGORIES.items():
        if key not in pks_of:
            continue
        shown = [examples[pk] for pk in sorted(pks_of[key], reverse=True) if pk in examples][:DIGEST_EXAMPLES]
        categories.append(
            {
                "key": key,
                "label": label,
                "count": len(pks_of[key]),
                "url": admin_list_url(category=key),
                "kinds": [
                    {"label": ExceptionKind(k).label, "count": kinds[k], "url": admin_list_url(kind=k)}
                    for k in members
                    if kinds[k]
                ],
                "examples": [_example(e) for e in shown],
                "more": len(pks_of[key]) - len(shown),
            }
        )
    return {"organization": organization, "total": len(rows), "categories": categories}


def _example(exception) -> dict:
    entity = f"{exception.entity_type.replace('_', ' ')} {exception.entity_id}".strip()
    return {
        "entity": entity or exception.get_kind_display(),
        "integration": exception.integration.name if exception.integration_id else "",
        "message": Truncator(exception.message).chars(DIGEST_EXCERPT_CHARS),
        "occurrences": exception.occurrences,
        "last_seen": exception.last_seen,
    }


def admin_list_url(**filters) -> str:
    """The exceptions changelist, open ones of a kind or category: absolute under SITE_URL when it is set."""
    query = {"status__exact": ExceptionStatus.OPEN}
    if "kind" in filters:
        query["kind__exact"] = filters["kind"]
    if "category" in filters:
        query["category"] = filters["category"]
    path = f"{reverse('admin:automations_syncexception_changelist')}?{urlencode(query)}"
    base = django_settings.SITE_URL.rstrip("/")
    return f"{base}{path}"


def _send(messages) -> tuple[int, list[int]]:
    """Send over one connection; returns how many went out and the exception ids of those that did not."""
    sent, failed = 0, []
    done = set()
    try:
        with get_connection() as connection:
            for index, (message, pks) in enumerate(messages):
                message.connection = connection
                try:
                    message.send()
                except Exception:
                    logger.exception("Could not send an exceptions digest to %s.", ", ".join(message.to))
                    failed += pks
                else:
                    sent += 1
                done.add(index)
    except Exception:  # the connection itself (open or close): what was not tried is given back
        logger.exception("The mail connection for exception digests failed.")
        failed += [pk for index, (_, pks) in enumerate(messages) if index not in done for pk in pks]
    return sent, failed
