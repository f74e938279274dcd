"""
Rows instead of raw JSON: conditions and actions edited as formsets of small forms, read from and written
to the list-of-dicts format the rules store (automations/conditions.py, automations/rules.py). Each row is
validated by the same functions the engines trust, and its error is shown beside it.

    formset = ConditionFormSet(request.POST or None, conditions=rule.conditions, prefix="conditions")
    if formset.is_valid():
        rule.conditions = formset.cleaned_conditions()
"""

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.template.loader import render_to_string

from automations import conditions, rules
from automations.choices import EXCEPTION_CATEGORIES, ActionType
from automations.models import AutomationRule, EngineSettings, RoutingRule
from core.ids import parse_id
from inventory.models import InventoryBuffer, Location
from orders.models import Order

from .common import SameOrganizationForm

CONDITIONS_HELP = (
    "An order matches the card when all (or any, as chosen above) of these hold; no conditions: every order "
    "matches. For “is one of”, separate values with commas. Clear a row or tick Delete to remove it."
)

BLANK = [("", "---------")]
FIELDS_OF_ANY_ACTION = ("reason", "minutes", "location", "tag", "message")


# --- conditions -----------------------------------------------------------------------------------------


class ConditionForm(forms.Form):
    """One condition: field, operator, value (comma-separated for "is one of")."""

    field = forms.ChoiceField(choices=BLANK + conditions.FIELD_CHOICES, required=False)
    operator = forms.ChoiceField(choices=BLANK + conditions.OPERATOR_CHOICES, required=False)
    value = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.TextInput(attrs={"size": 30}),
        help_text="Several values: comma-separated.",
    )

    def clean(self):
        cleaned = super().clean()
        if self.errors or not any(cleaned.get(k) for k in ("field", "operator", "value")):
            return cleaned  # a blank row is no condition
        if not cleaned.get("field"):
            raise ValidationError("Choose a field (or clear the row).")
        if not cleaned.get("operator"):
            raise ValidationError("Choose an operator.")
        try:
            cleaned["condition"] = conditions.validate(
                {
                    "field": cleaned["field"],
                    "operator": cleaned["operator"],
                    "value": cleaned.get("value", ""),
                }
            )
        except conditions.ConditionError as error:
            raise ValidationError(str(error)) from None
        return cleaned


class BaseConditionFormSet(forms.BaseFormSet):
    """Condition rows; `conditions=` the stored list (the initial rows), `cleaned_conditions()` the new one."""

    def __init__(self, data=None, *args, conditions=None, **kwargs):
        kwargs.setdefault("prefix", "conditions")
        kwargs["initial"] = [_condition_row(c) for c in conditions or [] if isinstance(c, dict)]
        super().__init__(data, *args, **kwargs)

    def cleaned_conditions(self) -> list[dict]:
        """The conditions in row order, blank and deleted rows left out (call after is_valid())."""
        return [form.cleaned_data["condition"] for form in live_rows(self, "condition")]


def live_rows(formset, key):
    """The rows that hold a cleaned `key`: not blank, not marked for deletion."""
    return [
        form
        for form in formset.forms
        if not formset._should_delete_form(form) and key in (getattr(form, "cleaned_data", None) or {})
    ]


def _condition_row(condition) -> dict:
    value = condition.get("value", "")
    return {
        "field": condition.get("field", ""),
        "operator": condition.get("operator", ""),
        "value": ", ".join(str(v) for v in value) if isinstance(value, list) else value,
    }


ConditionFormSet = forms.formset_factory(
    ConditionForm, formset=BaseConditionFormSet, extra=2, can_delete=True, max_num=50, validate_max=True
)


# --- actions --------------------------------------------------------------------------------------------


class ActionForm(forms.Form):
    """One action: its type, and the fields that type needs (the others are ignored)."""

    type = forms.ChoiceField(choices=BLANK + ActionType.choices, required=False)
    reason = forms.CharField(
        required=False, max_length=rules.MAX_REASON, help_text="Hold: shown on the order (optional)."
    )
    minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=rules.MAX_HOLD_MINUTES,
        widget=forms.NumberInput(attrs={"class": "sy-narrow-number"}),
        help_text="Hold for N minutes.",
    )
    location = forms.ModelChoiceField(
        queryset=Location.objects.none(), required=False, help_text="Route to a location."
    )
    tag = forms.CharField(required=False, max_length=rules.MAX_TAG, help_text="Add a tag.")
    message = forms.CharField(
        required=False, max_length=rules.MAX_MESSAGE, help_text="Raise an exception: what a person should do."
    )

    def __init__(self, *args, locations=None, organization=None, location_choices=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        field = self.fields["location"]
        field.queryset = locations if locations is not None else Location.objects.none()
        if location_choices is not None:
            field.choices = location_choices  # read once for every row (the formset's), not once per row

    def clean(self):
        cleaned = super().clean()
        if self.errors or not any(cleaned.get(k) for k in ("type", *FIELDS_OF_ANY_ACTION)):
            return cleaned  # a blank row is no action
        kind = cleaned.get("type")
        if not kind:
            raise ValidationError("Choose what the action does (or clear the row).")
        action = {"type": kind}
        for name in rules.ACTION_FIELDS[ActionType(kind)]:
            value = cleaned.get(name)
            action[name] = value.pk if isinstance(value, Location) else value
        if self.organization is None:
            cleaned["action"] = action  # checked against the rule's organization once it is known
            return cleaned
        cleaned["action"] = rules.validate_action(action, self.organization)
        return cleaned


class BaseActionFormSet(forms.BaseFormSet):
    """
    Action rows; `actions=` the stored list, `locations=` the choices for "route to", `organization=` the
    rule's organization (when not known yet, call `validate_for(organization)` once it is).
    """

    def __init__(self, data=None, *args, actions=None, locations=None, organization=None, **kwargs):
        kwargs.setdefault("prefix", "actions")
        kwargs["initial"] = [_action_row(a) for a in actions or [] if isinstance(a, dict)]
        kwargs["form_kwargs"] = {
            "locations": locations,
            "organization": organization,
            "location_choices": _location_choices(locations, several_orgs=organization is None),
        }
        super().__init__(data, *args, **kwargs)

    def clean(self):
        if any(self.errors):
            return
        if not self._rows():
            raise ValidationError("A rule needs at least one action.")

    def _rows(self):
        return live_rows(self, "action")

    def validate_for(self, organization) -> bool:
        """Check every row against the rule's organization; errors go to their rows. True when all pass."""
        ok = True
        for form in self._rows():
            try:
                form.cleaned_data["action"] = rules.validate_action(form.cleaned_data["action"], organization)
            except ValidationError as error:
                form.add_error(
                    "location" if form.cleaned_data["type"] == ActionType.ROUTE_TO else None, error
                )
                ok = False
        return ok

    def cleaned_actions(self) -> list[dict]:
        """The actions in row order, blank and deleted rows left out (call after is_valid())."""
        return [form.cleaned_data["action"] for form in self._rows()]


def _location_choices(locations, *, several_orgs):
    """The "route to" choices, labelled with their organization when they may span several."""
    if locations is None:
        return None
    rows = locations.select_related("organization").order_by("organization__name", "priority", "name")
    return BLANK + [
        (loc.pk, f"{loc.name} ({loc.organization})" if several_orgs else loc.name) for loc in rows
    ]


def _action_row(action) -> dict:
    return {key: action.get(key) for key in ("type", *FIELDS_OF_ANY_ACTION)}


ActionFormSet = forms.formset_factory(
    ActionForm, formset=BaseActionFormSet, extra=2, can_delete=True, max_num=20, validate_max=True
)


# --- the rule and card forms ------------------------------------------------------------------------------


class AutomationRuleForm(SameOrganizationForm):
    """The rule's own fields, plus its conditions and actions as formsets validated with it."""

    same_organization = ("organization", "source")
    locations = Location.objects.none()  # the "route to" choices: set per request by the admin

    class Meta:
        model = AutomationRule
        fields = [
            "organization",
            "name",
            "source",
            "trigger",
            "match",
            "position",
            "stop_processing",
            "active",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        data = self.data if self.is_bound else None
        org = self.instance.organization if self.instance.organization_id else None
        locations = self.locations.filter(organization=org) if org else self.locations
        self.condition_formset = ConditionFormSet(data, conditions=self.instance.conditions)
        self.action_formset = ActionFormSet(
            data, actions=self.instance.actions, locations=locations, organization=org
        )
        if not self.instance.pk and not self.instance.actions:
            self.action_formset.extra = 1

    def clean(self):
        cleaned = super().clean()
        conditions_ok = self.condition_formset.is_valid()
        actions_ok = self.action_formset.is_valid()
        org = cleaned.get("organization") or (
            self.instance.organization if self.instance.organization_id else None
        )
        if actions_ok and org is not None:
            actions_ok = self.action_formset.validate_for(org)
        if not (conditions_ok and actions_ok):
            raise ValidationError("The rule was not saved: fix the conditions or actions marked below.")
        self.instance.conditions = self.condition_formset.cleaned_conditions()
        self.instance.actions = self.action_formset.cleaned_actions()
        return cleaned


class DryRunForm(forms.Form):
    order = forms.CharField(
        label="Order", max_length=100, help_text="Its number (e.g. #1001), external id or id in the hub."
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_order(self):
        text = self.cleaned_data["order"].strip()
        found = Q(number=text) | Q(external_id=text)
        if (pk := parse_id(text)) is not None:  # "²" passed isdigit() and failed int(): a 500
            found |= Q(pk=pk)
        orders = list(Order.objects.filter(found, organization=self.organization).order_by("-pk")[:2])
        if not orders:
            raise ValidationError(f"No order {text!r} in {self.organization}.")
        if len(orders) > 1:
            raise ValidationError(f"Several orders match {text!r}; give the order's id.")
        return orders[0]


class ConditionRowsWidget(forms.Widget):
    """Shows the form's condition formset as rows; the formset, not this widget, reads what is posted."""

    formset = None

    def render(self, name, value, attrs=None, renderer=None):
        return render_to_string(
            "admin/automations/automationrule/rows.html",
            {"formset": self.formset, "title": "Conditions", "help": CONDITIONS_HELP, "id": "sy-conditions"},
        )

    def value_from_datadict(self, data, files, name):
        return None


class RoutingRuleForm(SameOrganizationForm):
    """A card's own fields, and its conditions as rows validated with it (never raw JSON)."""

    same_organization = ("organization",)
    condition_rows = forms.Field(required=False, label="", widget=ConditionRowsWidget)

    class Meta:
        model = RoutingRule
        fields = ["organization", "name", "match", "allow_split", "position", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.condition_formset = ConditionFormSet(
            self.data if self.is_bound else None, conditions=self.instance.conditions
        )
        if "condition_rows" in self.fields:
            widget = self.fields["condition_rows"].widget
            widget.formset = self.condition_formset

    def clean(self):
        cleaned = super().clean()
        if not self.condition_formset.is_valid():
            raise ValidationError("The card was not saved: fix the conditions marked below.")
        self.instance.conditions = self.condition_formset.cleaned_conditions()
        return cleaned


class PreferenceFormSet(forms.BaseInlineFormSet):
    """Each location once, and only the card's organization's."""

    def clean(self):
        super().clean()
        seen = set()
        for form in self.forms:
            location = (getattr(form, "cleaned_data", None) or {}).get("location")
            if location is None or self._should_delete_form(form):
                continue
            if location.organization_id != self.instance.organization_id:
                form.add_error("location", "This location belongs to another organization.")
            if location.pk in seen:
                form.add_error("location", "Already on this card.")
            seen.add(location.pk)


# --- engine settings --------------------------------------------------------------------------------------


def default_buffer(organization_id):
    """The organization-wide buffer row (no location, product or channel), or None."""
    return InventoryBuffer.objects.filter(
        organization_id=organization_id, location=None, product=None, channel=None
    ).first()


class EngineSettingsForm(forms.ModelForm):
    """The settings, with notification categories as checkboxes and the org-wide buffer beside them."""

    notify_categories = forms.MultipleChoiceField(
        choices=[(key, label) for key, (label, _) in EXCEPTION_CATEGORIES.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Notify about",
        help_text="Exception categories e-mailed to the integration's (else the organization's) address.",
    )
    buffer_quantity = forms.IntegerField(
        min_value=0,
        required=False,
        label="Default buffer (units)",
        help_text="Units of every product held back from every channel, unless a more specific buffer "
        "(location, product or channel) applies.",
    )
    buffer_percent = forms.DecimalField(
        min_value=0,
        max_value=100,
        max_digits=5,
        decimal_places=2,
        required=False,
        label="Default buffer (percent)",
        help_text="Or a percent of what is available, rounded up. Leave both empty for no default buffer.",
    )

    class Meta:
        model = EngineSettings
        fields = [
            "hold_enabled",
            "routing_enabled",
            "inventory_enabled",
            "exceptions_enabled",
            "default_hold_minutes",
            "routing_strategy",
            "allow_split",
            "unroutable_retry_minutes",
            "stuck_after_hours",
            "stale_after_days",
            "notify_categories",
            "digest_minutes",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            buffer = default_buffer(self.instance.organization_id)
            if buffer is not None:
                self.initial.setdefault("buffer_quantity", buffer.quantity)
                self.initial.setdefault("buffer_percent", buffer.percent)

    def clean_notify_categories(self):
        chosen = set(self.cleaned_data["notify_categories"])
        return [key for key in EXCEPTION_CATEGORIES if key in chosen]  # stored in the catalogue's order

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("buffer_quantity") is not None and cleaned.get("buffer_percent") is not None:
            raise forms.ValidationError(
                "A default buffer holds back units or a percent, not both: leave one of them empty."
            )
        return cleaned
