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

from inventory.models import Location

from . import conditions, rules
from .choices import ActionType

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
