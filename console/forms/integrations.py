"""
The integrations admin's forms. The settings part of the integration form is generated from the connector's JSON Schema.

Written by hand because the schema-form libraries (django-jsonform and the like) render a JavaScript JSON
editor that cannot keep secrets write-only; jsonschema (through services.settings_errors) stays the one
judge of validity, so the form only maps schema properties to widgets and errors back to fields.
"""

import json

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import escape, format_html

from integrations import connector_settings
from integrations.choices import Workflow
from integrations.models import Connector, Integration
from organizations.models import Organization

SETTING_PREFIX = "setting__"


def setting_field(spec: dict, *, required: bool, secret: bool) -> forms.Field:
    """One form field for one schema property."""
    kind = spec.get("type")
    # Django renders help_text as HTML (the admin's fieldsets and the form templates mark it safe): the
    # connector's description is text from outside, so it is escaped here. Labels and choices are escaped
    # when rendered.
    help_text = escape(spec.get("description", ""))
    common = {"label": spec.get("title"), "help_text": help_text, "required": required}
    if "default" in spec and not secret:
        # A new integration's form starts at the schema's default (a box whose default is true is ticked),
        # so saving it untouched stores what the connector means by default.
        common["initial"] = spec["default"]
    if secret:
        return forms.CharField(
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}), **common
        )
    if "enum" in spec:
        return forms.TypedChoiceField(
            choices=[("", "---------")] + [(v, v) for v in spec["enum"]],
            coerce=str,
            empty_value=None,
            **common,
        )
    if kind == "boolean":
        common["required"] = False  # an unticked box is a value (false), not a missing one
        return forms.BooleanField(**common)
    if kind == "integer":
        return forms.IntegerField(min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common)
    if kind == "number":
        return forms.FloatField(min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common)
    if kind in ("object", "array"):
        return forms.JSONField(**common)
    widget = {"uri": forms.URLInput, "email": forms.EmailInput}.get(spec.get("format"), forms.TextInput)
    return forms.CharField(widget=widget, max_length=spec.get("maxLength"), **common)


class IntegrationForm(forms.ModelForm):
    """Name, organization, notification address, settings (from the schema), mappings and workflows."""

    connector: Connector  # set by `integration_form_for`

    class Meta:
        model = Integration
        fields = ["organization", "name", "notification_email", "mappings"] + [
            f"flow_{f.value}" for f in Workflow
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.instance.connector = self.connector
            self.instance.apply_default_workflows()
            # ModelForm took its initial values before the connector type's defaults were applied.
            for flow in Workflow:
                self.initial[f"flow_{flow.value}"] = self.instance.workflow_enabled(flow)
        stored = connector_settings.full_settings(self.instance)
        for name, value in stored.items():
            field = self.fields.get(SETTING_PREFIX + name)
            if field is None:
                continue
            if name in self.connector.secret_fields:
                # Never sent back to the browser; a blank field keeps what is stored.
                field.required = False
                stored_note = "Stored; leave blank to keep it."
                field.help_text = (
                    format_html("{} {}", field.help_text, stored_note) if field.help_text else stored_note
                )
            else:
                field.initial = value
        if "organization" in self.fields:
            orgs = self.fields["organization"].queryset
            if self.connector.organization_id:
                self.fields["organization"].queryset = orgs = orgs.filter(pk=self.connector.organization_id)
            if orgs.count() == 1 and self.instance.pk is None:
                self.fields["organization"].initial = orgs.first()

    @property
    def setting_names(self):
        return [name[len(SETTING_PREFIX) :] for name in self.fields if name.startswith(SETTING_PREFIX)]

    def clean(self):
        cleaned = super().clean()
        submitted = {}
        for name in self.setting_names:
            value = cleaned.get(SETTING_PREFIX + name)
            if value is not None and value != "":
                submitted[name] = value
        current = connector_settings.full_settings(self.instance) if self.instance.pk else {}
        self.cleaned_settings = connector_settings.merge_settings(self.connector, current, submitted)
        errors = connector_settings.settings_errors(self.connector, self.cleaned_settings)
        errors.update(connector_settings.mapping_errors(self.connector, cleaned.get("mappings") or {}))
        for key, messages in errors.items():
            field = key if key in ("mappings", "__all__") else SETTING_PREFIX + key
            if field not in self.fields and field != "__all__":
                field = None
            for message in messages:
                self.add_error(field, message)
        org = cleaned.get("organization") or getattr(self.instance, "organization", None)
        name = cleaned.get("name")
        if org and name:
            clash = Integration.objects.filter(organization=org, name=name).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("name", "This organization already has an integration with that name.")
        return cleaned


def integration_form_for(connector: Connector, base=IntegrationForm) -> type[IntegrationForm]:
    """A form class with one declared field per setting of `connector`'s schema."""
    schema = connector.settings_schema or {}
    required = set(schema.get("required", []))
    secrets = connector.secret_fields
    attrs = {"connector": connector}
    for name, spec in schema.get("properties", {}).items():
        attrs[SETTING_PREFIX + name] = setting_field(spec, required=name in required, secret=name in secrets)
    return type(f"{connector.key.title().replace('-', '')}IntegrationForm", (base,), attrs)


class ChooseConnectorForm(forms.Form):
    connector = forms.ModelChoiceField(queryset=Connector.objects.none(), empty_label=None)


class ImportForm(forms.Form):
    organization = forms.ModelChoiceField(queryset=Organization.objects.none())
    file = forms.FileField(
        help_text="A JSON file made by “Export configuration” or `manage.py export_integration`."
    )
    name = forms.CharField(required=False, help_text="Defaults to the name in the file.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > 1_000_000:
            raise ValidationError("The file is larger than 1 MB.")
        try:
            return json.loads(upload.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationError(f"Not valid JSON: {exc}") from exc


class ConnectorForm(forms.ModelForm):
    class Meta:
        model = Connector
        fields = [
            "organization",
            "key",
            "name",
            "type",
            "description",
            "version",
            "recommended_grants",
            "settings_schema",
            "mapping_kinds",
            "manifest",
        ]

    def clean_settings_schema(self):
        schema = self.cleaned_data.get("settings_schema") or {}
        connector_settings.check_settings_schema(schema)
        return schema

    def clean_mapping_kinds(self):
        kinds = self.cleaned_data.get("mapping_kinds") or []
        if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
            raise ValidationError('A list of names, e.g. ["shipping_methods", "skus"].')
        return kinds

    def clean_recommended_grants(self):
        grants = self.cleaned_data.get("recommended_grants") or []
        if not isinstance(grants, list) or not all(isinstance(g, str) and ":" in g for g in grants):
            raise ValidationError('A list of "resource:access" grants, e.g. ["orders:read"].')
        return grants

    def clean_manifest(self):
        manifest = self.cleaned_data.get("manifest")
        if manifest in (None, {}):
            return None
        allowed = {"health", "orders", "dispatch", "inventory", "prices"}
        if not isinstance(manifest, dict) or not all(
            k in allowed and isinstance(v, str) and v.startswith("/") for k, v in manifest.items()
        ):
            raise ValidationError(
                "An object of endpoint paths, keys among "
                + ", ".join(sorted(allowed))
                + ', e.g. {"health": "/health"}.'
            )
        return manifest
