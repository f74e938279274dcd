"""
The CSV import's forms (django-import-export), bound to one organization: the upload form names it, and the
confirm step reads only the upload this user previewed for it.
"""

import os
from datetime import timedelta

from django import forms
from django.core import signing
from import_export.forms import ConfirmImportForm, ImportForm
from import_export.tmp_storages import TempFolderStorage

from organizations.models import Organization


class OrganizationImportForm(ImportForm):
    organization = forms.ModelChoiceField(
        queryset=Organization.objects.none(),
        empty_label=None,
        help_text="Rows are matched and created in this organization only.",
    )
    field_order = ["organization", "resource", "import_file", "format"]


# The confirm step names its upload with a signed token (issue 14, finding 7): bound to the user and the
# organization of the preview, and to its format and resource, and valid for this long.
IMPORT_CONFIRM_SALT = "inventory.admin.import-confirm"
IMPORT_CONFIRM_MAX_AGE = timedelta(hours=1)
IMPORT_CONFIRM_REFUSED = (
    "This upload cannot be imported: it was already imported, its preview is more than an hour old, or it "
    "was not previewed by you for this organization. Upload the file again."
)


def sign_upload(name, user, organization, file_format, resource) -> str:
    """The token of the confirm form: the upload's name in the temp folder and what its preview was for."""
    payload = {
        "name": name,
        "user": user.pk,
        "org": organization.pk,
        "format": file_format,
        "resource": resource,
    }
    return signing.dumps(payload, salt=IMPORT_CONFIRM_SALT)


class OrganizationConfirmImportForm(ConfirmImportForm):
    """
    The import's confirm step. Its hidden upload name is a token from `sign_upload`: only the upload this
    user previewed for this organization, in that format and resource, within the hour, and still there,
    is read (and then removed). Anything else is refused before a file is touched.
    """

    # Posted again on confirmation: validated against the user's organizations a second time.
    organization = forms.ModelChoiceField(queryset=Organization.objects.none(), widget=forms.HiddenInput)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_import_file_name(self):
        # The token as posted: the library's basename() of a plain name does not apply to it.
        return self.cleaned_data["import_file_name"]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            upload = signing.loads(
                cleaned["import_file_name"], salt=IMPORT_CONFIRM_SALT, max_age=IMPORT_CONFIRM_MAX_AGE
            )
        except signing.BadSignature:  # tampered, hand-written or expired (SignatureExpired)
            raise forms.ValidationError(IMPORT_CONFIRM_REFUSED, code="upload_refused") from None
        previewed = (upload["user"], upload["org"], upload["format"], upload["resource"])
        posted = (self.user.pk, cleaned["organization"].pk, cleaned["format"], cleaned.get("resource", ""))
        path = TempFolderStorage(name=upload["name"]).get_full_path()
        # Still there? Not after the first of two clicks on "Confirm import", nor once the temp folder is swept.
        if previewed != posted or not os.path.isfile(path):
            raise forms.ValidationError(IMPORT_CONFIRM_REFUSED, code="upload_refused")
        cleaned["import_file_name"] = upload["name"]
        return cleaned
