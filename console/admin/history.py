"""The admin's History page for configuration models (core/history.py): who, when, what changed.

simple-history's SimpleHistoryAdmin, narrowed for a multi-tenant hub:
- an object outside your organizations is a 404, as on every other admin page (simple-history would fall
  back to the object's last historical row and answer 403, which confirms the object exists);
- no "revert to this version": its form view would save an old copy of, say, a key's grants or an
  integration's settings past the services' checks, so its URL is not registered at all;
- secret settings (Connector.secret_fields) show as "changed", never their values.

Also the integration page's "Configuration changes" table, which reads the history of the integration and
of the rows hanging off it in four apps (mappings, subscriptions, keys): hence the console, above them.
"""

import json

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin
from simple_history.template_utils import HistoricalRecordContextHelper, ObjDiffDisplay

from integrations.models import Integration, WebhookSubscription
from inventory.models import SkuMapping
from orders.models import ShippingMethodMapping
from tokens.models import ApiKey

from ..display import html_table

SECRET_CHANGED = "changed (secret)"  # noqa: S105 - a label shown instead of the value


class ConfigChangeHelper(HistoricalRecordContextHelper):
    """A JSON object field's change is listed key by key; the keys in `secret_keys[field]` only as changed."""

    max_chars = 200

    def __init__(self, model, record, *, secret_keys=None):
        super().__init__(model, record, max_displayed_delta_change_chars=self.max_chars)
        self.secret_keys = secret_keys or {}

    def context_for_delta_changes(self, delta):
        rows = []
        for change in delta.changes:
            field = self.model._meta.get_field(change.field)
            label = capfirst(field.verbose_name)
            if isinstance(field, models.JSONField):
                if isinstance(change.old, dict) or isinstance(change.new, dict):
                    rows.extend(self._dict_rows(label, change.field, change.old or {}, change.new or {}))
                else:  # lists (conditions, actions, grants, event types) as JSON, not Python reprs
                    rows.append(
                        {"field": label, "old": self._show(change.old), "new": self._show(change.new)}
                    )
                continue
            formatted = self.format_delta_change(change)
            rows.append({"field": formatted.field, "old": formatted.old, "new": formatted.new})
        return rows

    def _dict_rows(self, label, field_name, old, new):
        secret = self.secret_keys.get(field_name, set())
        for key in sorted(set(old) | set(new), key=str):
            before, after = old.get(key, _MISSING), new.get(key, _MISSING)
            if before == after:
                continue
            name = f"{label} › {key}"
            if key in secret:
                yield {"field": name, "old": "", "new": SECRET_CHANGED, "masked": True}
                continue
            yield {"field": name, "old": self._show(before), "new": self._show(after)}

    def _show(self, value):
        if value is _MISSING:
            return "(none)"
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
        return conditional_escape(ObjDiffDisplay(max_length=self.max_chars).common_shorten_repr(text)[0])


_MISSING = object()


class ConfigHistoryAdmin(SimpleHistoryAdmin):
    """Mix in first (before the OrganizationScoped… bases) on the admin of a model with a ConfigHistory."""

    object_history_template = "admin/config_history/object_history.html"
    object_history_list_template = "admin/config_history/object_history_list.html"
    history_list_per_page = 50

    def history_secret_keys(self, obj) -> dict[str, set[str]]:
        """{JSON field: keys whose values are secrets}, for `obj`."""
        return {}

    def related_history(self, obj):
        """(title, table) of the history of rows edited with `obj` (its inline), shown under its own; or None."""
        return None

    def get_urls(self):
        # Everything but simple-history's per-version form (the revert view): see the module docstring.
        return super(SimpleHistoryAdmin, self).get_urls()

    def revert_disabled(self, request, obj=None):
        return True

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))  # the scoped queryset: 404 outside it
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        request.history_secret_keys = self.history_secret_keys(obj)
        related = self.related_history(obj)
        extra_context = {**(extra_context or {}), "related_history": related}
        return super().history_view(request, object_id, extra_context)

    def get_historical_record_context_helper(self, request, historical_record):
        secret_keys = getattr(request, "history_secret_keys", {})
        return ConfigChangeHelper(self.model, historical_record, secret_keys=secret_keys)


# --- the integration page's "Configuration changes": its own rows, its mappings, subscriptions and keys -----


def _label(record) -> str:
    # From the historical row's own columns: str() of the object would load related rows, one per line.
    for field, shown in (
        ("external_sku", "SKU mapping {}"),
        ("external_code", "Shipping method mapping {}"),
        ("url", "Webhook {}"),
        ("prefix", "Key sy_{}_…"),
    ):
        if hasattr(record, field):
            return shown.format(getattr(record, field))
    return "Integration"


def _with_previous(model, queryset, limit):
    """The newest `limit` rows of `queryset`, each with `.previous` (the object's row before it, or None),
    in two queries."""
    previous = (
        model.objects.filter(id=OuterRef("id"), history_date__lt=OuterRef("history_date"))
        .order_by("-history_date", "-history_id")
        .values("history_id")[:1]
    )
    rows = list(
        queryset.select_related("history_user")
        .annotate(previous_id=Subquery(previous))
        .order_by("-history_date", "-history_id")[:limit]
    )
    earlier = model.objects.in_bulk([r.previous_id for r in rows if r.previous_id])
    for row in rows:
        row.previous = earlier.get(row.previous_id)
    return rows


def _summary(record) -> str:
    if record.history_type == "+":
        return "created"
    if record.history_type == "-":
        return "deleted"
    if record.previous is None:
        return "changed"
    names = record.diff_against(record.previous).changed_fields
    meta = record.instance_type._meta
    return "changed " + ", ".join(str(meta.get_field(n).verbose_name) for n in names) if names else "saved"


def who(record) -> str:
    if record.history_user_id:
        user = str(record.history_user)
        return f"{user} ({record.history_change_reason})" if record.history_change_reason else user
    return record.history_change_reason or "system"


def rows_table(model, queryset, describe, limit=50):
    """A table of `queryset`'s newest historical rows of `model`: when, action, `describe(row)`, who."""
    rows = _with_previous(model, queryset, limit)
    return html_table(
        ["When", "Action", "Row", "By"],
        (
            (
                timezone.localtime(r.history_date).strftime("%Y-%m-%d %H:%M:%S"),
                _summary(r),
                describe(r),
                who(r),
            )
            for r in rows
        ),
        empty="No changes recorded.",
    )


def configuration_changes(integration, limit=15):
    """The last `limit` configuration changes of an integration and the rows hanging off it, as a table
    (field names only: values, secret or not, are on each object's History page)."""
    sources = [(Integration.history.model, Integration.history.filter(id=integration.pk))]
    for model in (SkuMapping, ShippingMethodMapping, WebhookSubscription, ApiKey):
        sources.append((model.history.model, model.history.filter(integration_id=integration.pk)))
    records = sorted(
        (r for model, queryset in sources for r in _with_previous(model, queryset, limit)),
        key=lambda r: (r.history_date, r.history_id),
        reverse=True,
    )[:limit]
    link = reverse("admin:integrations_integration_history", args=[integration.pk])
    return html_table(
        ["When", "What", "Change", "By"],
        (
            (
                timezone.localtime(r.history_date).strftime("%Y-%m-%d %H:%M:%S"),
                _label(r),
                _summary(r),
                who(r),
            )
            for r in records
        ),
        empty="No configuration changes recorded yet.",
        link=(link, "History of the integration's own settings"),
    )
