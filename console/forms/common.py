"""What the admin's model forms share: rows linked together stay inside one organization."""

from django import forms
from django.core.exceptions import ValidationError

from organizations.models import Organization


class SameOrganizationForm(forms.ModelForm):
    """Refuses to link rows of different organizations (FK choices span every organization a user administers)."""

    same_organization: tuple[str, ...] = ()

    def clean(self):
        cleaned = super().clean()
        orgs = set()
        for name in self.same_organization:
            value = cleaned.get(name) if name in self.fields else getattr(self.instance, name, None)
            if value is not None:
                orgs.add(value.pk if isinstance(value, Organization) else value.organization_id)
        if len(orgs) > 1:
            labels = ", ".join(self.instance._meta.get_field(n).verbose_name for n in self.same_organization)
            raise ValidationError(f"The {labels} must all belong to the same organization.")
        return cleaned


def same_organization_form(*names):
    return type("SameOrganizationForm", (SameOrganizationForm,), {"same_organization": names})
