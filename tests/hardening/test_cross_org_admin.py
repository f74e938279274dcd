"""
The outside probe's tenancy sweep over the admin, kept (#14): on the demo data (two organizations), every
object URL of every registered admin — change, delete, history and each custom object view (export,
access, disable, replay, …) — is tried with GET and POST by a user of the *other* organization and by a
member holding a permission on one integration only, for objects they may not see.

A foreign object must answer exactly as an id that does not exist (no existence oracle: 404, or the same
refusal), never 200, never a 5xx, and nothing may change. The list of objects is discovered from the admin
itself (what a superuser's queryset holds and the tenant user's does not), so a new admin or a new custom
URL is swept without anyone listing it here.
"""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.test import RequestFactory
from django.urls import reverse

from console.management.commands import seed_demo
from integrations.models import Integration
from tokens.choices import KeyKind
from tokens.issuing import issue_key

User = get_user_model()
OBJECT_KWARGS = ("object_id", "id", "pk")
# Registered models whose foreign rows the sweep must find, per user: it cannot pass by finding nothing.
# The demo member holds a permission on the Web shop, which carries the demo's orders and subscriptions.
MUST_SWEEP = {
    "northwind admin": {
        "integrations.integration",
        "integrations.integrationevent",
        "integrations.webhooksubscription",
        "integrations.webhookdelivery",
        "tokens.apikey",
        "orders.order",
        "inventory.product",
        "inventory.location",
        "organizations.organization",
        "auth.user",
    },
    "demo member": {
        "integrations.integration",
        "integrations.integrationevent",
        "tokens.apikey",
        "organizations.organization",
        "auth.user",
    },
}


def object_patterns(model_admin):
    """(url name, kwarg) of every admin URL of this model that takes one object's id."""
    found = []
    for pattern in model_admin.get_urls():
        keys = getattr(pattern.pattern, "converters", {}).keys() or pattern.pattern.regex.groupindex.keys()
        kwarg = next((k for k in keys if k in OBJECT_KWARGS), None)
        if pattern.name and kwarg and len(keys) == 1:
            found.append((pattern.name, kwarg))
    return found


def visible_pks(model_admin, user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return set(model_admin.get_queryset(request).values_list("pk", flat=True))


def snapshot(model, pks):
    return {pk: model_to_dict(obj) for pk, obj in model._default_manager.in_bulk(list(pks)).items()}


@pytest.fixture
def demo(db, superuser):
    call_command("seed_demo", password="Probe-probe-1234", stdout=open("/dev/null", "w"))  # noqa: SIM115
    for integration in Integration.objects.all():  # a key of every integration, as the probe had
        issue_key(kind=KeyKind.INTEGRATION, name="probe", integration=integration)
    return {
        "northwind admin": User.objects.get(username=seed_demo.NORTHWIND_ADMIN_EMAIL),
        "demo member": User.objects.get(username=seed_demo.MEMBER_EMAIL),
        "superuser": superuser,
    }


@pytest.mark.parametrize("who", ["northwind admin", "demo member"])
def test_foreign_objects_answer_as_missing_ones_on_every_admin_url(client, demo, who):
    user = demo[who]
    client.force_login(user)
    failures, swept, requests = [], set(), 0
    for model, model_admin in admin.site._registry.items():
        patterns = object_patterns(model_admin)
        foreign = sorted(visible_pks(model_admin, demo["superuser"]) - visible_pks(model_admin, user))
        if not patterns or not foreign:
            continue
        swept.add(model._meta.label_lower)
        targets = foreign[:1]
        missing = max(model._default_manager.values_list("pk", flat=True)) + 100_000
        before = snapshot(model, targets)
        for name, kwarg in patterns:
            url_name = f"{admin.site.name}:{name}"
            for method in ("get", "post"):
                send = getattr(client, method)
                data = {"post": "yes", "name": "Hijacked"} if method == "post" else None
                expected = send(reverse(url_name, kwargs={kwarg: missing}), data).status_code
                for pk in targets:
                    requests += 1
                    status = send(reverse(url_name, kwargs={kwarg: pk}), data).status_code
                    if status != expected or status == 200 or status >= 500:
                        failures.append(f"{method.upper()} {name} pk={pk}: {status} (missing id: {expected})")
        if snapshot(model, targets) != before:
            failures.append(f"{model._meta.label}: a foreign row changed")

    assert MUST_SWEEP[who] <= swept, f"not swept (no foreign rows): {sorted(MUST_SWEEP[who] - swept)}"
    assert requests > 50
    assert not failures, "\n".join(failures)
