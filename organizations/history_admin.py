"""The admin's History page for configuration models (organizations/history.py): who, when, what changed.

simple-history's SimpleHistoryAdmin, narrowed for a multi-tenant hub:
- an object outside your organizations is a 404, as on every other admin page (simple-history would fall
  back to the object's last historical row and answer 403, which confirms the object exists);
- no "revert to this version": its form view would save an old copy of, say, a key's grants or an
  integration's settings past the services' checks, so its URL is not registered at all;
- secret settings (Connector.secret_fields) show as "changed", never their values.
"""

import json

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.utils.html import conditional_escape
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin
from simple_history.template_utils import HistoricalRecordContextHelper, ObjDiffDisplay

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
            if isinstance(field, models.JSONField) and (
                isinstance(change.old, dict) or isinstance(change.new, dict)
            ):
                rows.extend(self._dict_rows(label, change.field, change.old or {}, change.new or {}))
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
                yield {"field": name, "old": "", "new": SECRET_CHANGED, "secret": True}
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

    object_history_list_template = "admin/config_history/object_history_list.html"
    history_list_per_page = 50

    def history_secret_keys(self, obj) -> dict[str, set[str]]:
        """{JSON field: keys whose values are secrets}, for `obj`."""
        return {}

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
        return super().history_view(request, object_id, extra_context)

    def get_historical_record_context_helper(self, request, historical_record):
        secret_keys = getattr(request, "history_secret_keys", {})
        return ConfigChangeHelper(self.model, historical_record, secret_keys=secret_keys)
