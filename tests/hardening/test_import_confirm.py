"""
The admin import's confirm step (issue 14, finding 7): it imports the upload its own preview made, for the
same user and organization, within the hour — never another user's upload, another organization's, or any
other file in the server's temp folder. A refused confirmation says why, imports nothing, deletes nothing,
and is never a 500.
"""

import tempfile
import time

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from inventory.models import Product
from organizations.choices import Role
from tests.fixtures.organizations import join, make_user

IMPORT_URL = reverse("admin:inventory_product_import")
CONFIRM_URL = reverse("admin:inventory_product_process_import")
REFUSED = "This upload cannot be imported"


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    """The server's temp folder, private to the test: what is in it is exactly what the admin wrote."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def upload(client, org, text="sku,name\nHONEST,Honest product\n"):
    """The import's first step: the preview. Returns the confirm form's data as the browser would post it."""
    file = SimpleUploadedFile("data.csv", text.encode(), content_type="text/csv")
    preview = client.post(
        IMPORT_URL, {"organization": org.pk, "format": "0", "resource": "0", "import_file": file}
    )
    assert preview.status_code == 200
    confirm = preview.context["confirm_form"]
    return {name: confirm.initial.get(name, "") for name in confirm.fields}


def refused(response):
    return response.status_code == 200 and REFUSED in response.content.decode()


@pytest.fixture
def client_factory():
    """A logged-in admin client per user, so two users can act side by side."""

    def login(user):
        client = Client()
        client.force_login(user)
        return client

    return login


@pytest.fixture
def alice(admin_client_for, org_admin):
    return admin_client_for(org_admin)


@pytest.fixture
def bob(client_factory, org):
    """A second admin of the same organization, with his own session."""
    return client_factory(join(make_user("bob"), org, Role.ADMIN))


@pytest.fixture
def oscar(client_factory, other_admin):
    """The admin of another organization."""
    return client_factory(other_admin)


def test_the_honest_confirmation_imports_and_removes_the_upload(alice, org, upload_dir):
    data = upload(alice, org)
    assert len(list(upload_dir.iterdir())) == 1

    response = alice.post(CONFIRM_URL, data)

    assert response.status_code == 302
    assert Product.objects.get(organization=org, sku="HONEST").name == "Honest product"
    assert list(upload_dir.iterdir()) == []


def test_another_admin_of_the_same_organization_cannot_confirm_the_upload(alice, bob, org, upload_dir):
    data = upload(alice, org)

    response = bob.post(CONFIRM_URL, data)

    assert refused(response)
    assert not Product.objects.filter(sku="HONEST").exists()
    assert len(list(upload_dir.iterdir())) == 1  # still there for alice
    assert alice.post(CONFIRM_URL, data).status_code == 302
    assert Product.objects.filter(organization=org, sku="HONEST").exists()


def test_another_organizations_admin_cannot_confirm_the_upload_into_his_own(
    alice, oscar, org, other_org, upload_dir
):
    data = upload(alice, org)

    response = oscar.post(CONFIRM_URL, {**data, "organization": other_org.pk})

    assert refused(response)
    assert not Product.objects.filter(sku="HONEST").exists()
    assert len(list(upload_dir.iterdir())) == 1


def test_an_admin_of_two_organizations_cannot_move_an_upload_to_the_other(
    admin_client_for, org_admin, org, other_org, upload_dir
):
    join(org_admin, other_org, Role.ADMIN)
    client = admin_client_for(org_admin)
    data = upload(client, org)

    response = client.post(CONFIRM_URL, {**data, "organization": other_org.pk})

    assert refused(response)
    assert not Product.objects.filter(sku="HONEST").exists()


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "planted.csv", "no-such-upload"])
def test_a_name_the_preview_did_not_sign_is_refused(alice, org, upload_dir, name):
    planted = upload_dir / "planted.csv"
    planted.write_text("sku,name\nPLANTED,Planted product\n")
    data = upload(alice, org)

    response = alice.post(CONFIRM_URL, {**data, "import_file_name": name})

    assert refused(response)
    assert planted.read_text() == "sku,name\nPLANTED,Planted product\n"
    assert not Product.objects.filter(organization=org).exists()
    assert len(list(upload_dir.iterdir())) == 2  # the planted file and alice's upload


def test_a_signed_name_with_a_changed_format_or_resource_is_refused(alice, org, upload_dir):
    data = upload(alice, org)

    for change in ({"format": "7"}, {"format": "x"}, {"resource": "3"}):
        assert refused(alice.post(CONFIRM_URL, {**data, **change})), change

    assert not Product.objects.exists()
    assert len(list(upload_dir.iterdir())) == 1


def test_a_confirmation_after_the_hour_is_refused(alice, org, upload_dir, monkeypatch):
    data = upload(alice, org)
    later = time.time() + 3601
    monkeypatch.setattr(signing.time, "time", lambda: later)

    response = alice.post(CONFIRM_URL, data)

    assert refused(response)
    assert not Product.objects.exists()


def test_confirming_twice_is_refused_the_second_time(alice, org, upload_dir):
    data = upload(alice, org)
    assert alice.post(CONFIRM_URL, data).status_code == 302

    response = alice.post(CONFIRM_URL, data)

    assert refused(response)
    assert Product.objects.filter(organization=org).count() == 1
