"""The keys admin's forms: issuing a key, registering a custom integration, changing and rotating a key."""

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from integrations.choices import ConnectorType
from integrations.models import Integration
from tokens import issuing
from tokens.choices import Expiration
from tokens.grants import GRANT_CHOICES, UnknownGrant, normalize
from tokens.models import ApiKey


class KeyOptionsForm(forms.Form):
    """Grants, expiry and allowed IP ranges: what every new key asks for."""

    grants = forms.MultipleChoiceField(
        choices=GRANT_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Pre-filled with the connector's recommended grants.",
    )
    expiration = forms.ChoiceField(choices=Expiration.choices, initial=Expiration.DAYS_365)
    expires_on = forms.DateTimeField(
        required=False,
        help_text="For “On a date”: YYYY-MM-DD HH:MM (UTC).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    allowed_ips = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="CIDR ranges, one per line (e.g. 203.0.113.0/24). Empty: any address.",
    )

    def clean_allowed_ips(self):
        lines = [line.strip() for line in self.cleaned_data["allowed_ips"].splitlines() if line.strip()]
        return issuing.validate_cidrs(lines)

    def clean(self):
        cleaned = super().clean()
        policy, date = cleaned.get("expiration"), cleaned.get("expires_on")
        if policy == Expiration.DATE and not date:
            self.add_error("expires_on", "Choose the expiry date.")
        elif policy == Expiration.DATE and date <= timezone.now():
            self.add_error("expires_on", "The expiry must be in the future.")
        elif policy:
            cleaned["expires_at"] = issuing.expires_at_for(policy, date)
        return cleaned


class RegisterCustomIntegrationForm(KeyOptionsForm):
    organization = forms.ModelChoiceField(queryset=None, empty_label=None)
    connector_type = forms.ChoiceField(choices=ConnectorType.choices, widget=forms.HiddenInput)
    name = forms.CharField(
        max_length=120, help_text="How the partner's system is called here, e.g. “Acme 3PL”."
    )
    notification_email = forms.EmailField(
        required=False, help_text="Where exceptions and key expiry notices go."
    )

    field_order = [
        "organization",
        "connector_type",
        "name",
        "notification_email",
        "grants",
        "expiration",
        "expires_on",
        "allowed_ips",
    ]

    def __init__(self, *args, organizations, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations

    def clean(self):
        cleaned = super().clean()
        org, name = cleaned.get("organization"), cleaned.get("name")
        if org and name and Integration.objects.filter(organization=org, name=name).exists():
            self.add_error("name", "This organization already has an integration with that name.")
        if not cleaned.get("grants"):
            self.add_error("grants", "Give the key at least one grant.")
        return cleaned


class IssueKeyForm(KeyOptionsForm):
    name = forms.CharField(max_length=120)

    field_order = ["name", "grants", "expiration", "expires_on", "allowed_ips"]


class ApiKeyChangeForm(forms.ModelForm):
    """Name, grants, expiry and allowed IP ranges of an existing key; the secret is never shown again."""

    grants = forms.MultipleChoiceField(
        choices=GRANT_CHOICES, widget=forms.CheckboxSelectMultiple, required=False
    )
    allowed_ips = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="CIDR ranges, one per line. Empty: any address.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "grants", "expires_at", "allowed_ips"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "allowed_ips" in self.fields:
            self.initial["allowed_ips"] = "\n".join(self.instance.allowed_ips or [])

    def clean_grants(self):
        return validate_grants(self.cleaned_data["grants"])

    def clean_allowed_ips(self):
        lines = [line.strip() for line in self.cleaned_data["allowed_ips"].splitlines() if line.strip()]
        return issuing.validate_cidrs(lines)


class RotateForm(forms.Form):
    grace_hours = forms.IntegerField(
        min_value=0, max_value=24 * 30, initial=24, help_text="How long the old key keeps working."
    )


def validate_grants(grants):
    try:
        return normalize(grants)
    except UnknownGrant as exc:
        raise ValidationError(str(exc)) from exc
