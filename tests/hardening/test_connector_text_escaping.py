"""
Connector-supplied text is data, never markup (#14, finding 2). A private connector whose every text —
name, description, version, settings-schema titles, descriptions, enum values and labels, `oneOf` titles,
property names, mapping kinds, grants, manifest endpoint names — carries HTML comes in through
`import_integration`, the admin's import and the connector admin; it is stored verbatim, shown escaped on
every admin page an org admin or a superuser can reach by links, and in the exceptions e-mail; and saving
the integration's form as a browser would changes nothing it did not show (an `<input>` in a setting's
description once overrode the integration's notification address).
"""

import io
import json
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.html import escape

from automations import exceptions as exception_services
from automations.notifications import build_messages
from console.transfer import EXPORT_FORMAT
from core.sync_exceptions import ExceptionKind
from integrations.connector_settings import full_settings
from integrations.models import Connector, Integration

from .test_admin_escaping import crawl_for_raw

HIDDEN = '<input type="hidden" name="notification_email" value="attacker@evil.example">'
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = '"><script>alert(1)</script>'
HOSTILE = HIDDEN + IMG + SCRIPT
SHORT = IMG + SCRIPT  # for fields of at most 120 characters
# What must never reach a page raw: each payload's opening, however the rest of it is cut or quoted.
RAW = ['<input type="hidden" name="notification_email"', "<img src=x", "<script>alert"]
ESCAPED = escape(HIDDEN)
NOTIFY = "owner@acme.test"

SCHEMA = {
    "type": "object",
    "title": HOSTILE,
    "description": HOSTILE,
    "properties": {
        "region": {
            "type": "string",
            "title": HOSTILE,
            "description": HOSTILE,
            "enum": ["eu", IMG],
            "enumNames": [HOSTILE, HOSTILE],
        },
        "mode": {
            "type": "string",
            "title": HOSTILE,
            "description": HOSTILE,
            "oneOf": [{"const": "fast", "title": HOSTILE}, {"const": "slow", "title": HOSTILE}],
        },
        "api_token": {"type": "string", "writeOnly": True, "title": HOSTILE, "description": HOSTILE},
        "dry_run": {"type": "boolean", "title": HOSTILE, "description": HOSTILE},
        "page_size": {"type": "integer", "minimum": 1, "title": HOSTILE, "description": HOSTILE},
        "options": {"type": "object", "title": HOSTILE, "description": HOSTILE},
        "docs_url": {"type": "string", "format": "uri", "title": HOSTILE, "description": HOSTILE},
        # Quoted by the error a value that does not match it gets.
        "code": {"type": "string", "pattern": f"^{IMG}$", "title": HOSTILE, "description": HOSTILE},
        IMG: {"type": "string", "title": HOSTILE, "description": HOSTILE, "examples": [HOSTILE]},
    },
}
SETTINGS = {
    "region": "eu",
    "mode": "fast",
    "dry_run": True,
    "page_size": 7,
    "options": {IMG: SCRIPT},
    IMG: SHORT,
}


def export_file(key="hostile", name="Hostile " + SHORT):
    """An `export_integration` file of an integration of a private connector, markup in every text."""
    return {
        "format": EXPORT_FORMAT,
        "name": name,
        "notification_email": NOTIFY,
        "settings": SETTINGS,
        "mappings": {SHORT: {IMG: SCRIPT}},
        "connector": {
            "key": key,
            "private": True,
            "name": SHORT,
            "type": "channel",
            "version": "<img src=x>",
            "description": HOSTILE,
            "recommended_grants": ["orders:read", HOSTILE],
            "settings_schema": SCHEMA,
            "mapping_kinds": ["skus", SHORT],
            "manifest": {"health": "/health" + IMG, SHORT: "/" + SCRIPT},
        },
    }


@pytest.fixture
def hostile(org, settings):
    """The file imported by `manage.py import_integration`, its secret entered, and an exception raised."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("import_integration", "-", org=org.slug, stdin=io.StringIO(json.dumps(export_file())))
    integration = Integration.objects.get(organization=org, connector__key="hostile")
    # The secret the change form then describes as stored (its help text grows a sentence).
    integration.secret_settings = {"api_token": "tok-12345678"}
    integration.save(update_fields=["secret_settings"])
    exception_services.raise_exception(
        org,
        ExceptionKind.INTEGRATION_ERROR,
        f"The connector {integration.connector.name!r} publishes no {SHORT!r} endpoint.",
        integration=integration,
        entity_type="integration",
        entity_id=integration.pk,
    )
    return integration


def assert_stored_verbatim(connector):
    assert (connector.name, connector.description, connector.version) == (SHORT, HOSTILE, "<img src=x>")
    assert connector.settings_schema == SCHEMA
    assert connector.mapping_kinds == ["skus", SHORT]
    assert connector.recommended_grants == ["orders:read", HOSTILE]
    assert connector.manifest == {"health": "/health" + IMG, SHORT: "/" + SCRIPT}


def test_import_integration_command_stores_connector_text_verbatim(hostile):
    assert_stored_verbatim(hostile.connector)
    assert hostile.name == "Hostile " + SHORT
    assert hostile.mappings == {SHORT: {IMG: SCRIPT}}
    assert full_settings(hostile) == {**SETTINGS, "api_token": "tok-12345678"}


def test_admin_import_stores_connector_text_verbatim_and_shows_it_escaped(org, org_admin, admin_client_for):
    client = admin_client_for(org_admin)
    upload = io.BytesIO(json.dumps(export_file(key="hostile-upload")).encode())
    upload.name = "hostile.json"

    response = client.post(
        reverse("admin:integrations_integration_import"), {"organization": org.pk, "file": upload, "name": ""}
    )

    assert response.status_code == 302, response.content[:2000]
    integration = Integration.objects.get(organization=org, connector__key="hostile-upload")
    assert_stored_verbatim(integration.connector)
    page = client.get(response["Location"]).content.decode()
    assert ESCAPED in page
    assert not [raw for raw in RAW if raw in page]


def test_connector_admin_stores_connector_text_verbatim(org, org_admin, admin_client_for):
    client = admin_client_for(org_admin)

    response = client.post(
        reverse("admin:integrations_connector_add"),
        {
            "organization": org.pk,
            "key": "hostile-admin",
            "name": SHORT,
            "type": "channel",
            "description": HOSTILE,
            "version": "<img src=x>",
            "recommended_grants": json.dumps(["orders:read", "x:" + IMG]),
            "settings_schema": json.dumps(SCHEMA),
            "mapping_kinds": json.dumps(["skus", SHORT]),
            "manifest": json.dumps({"health": "/health" + IMG}),
        },
    )

    assert response.status_code == 302, response.content[:2000]
    connector = Connector.objects.get(organization=org, key="hostile-admin")
    assert (connector.name, connector.description, connector.settings_schema) == (SHORT, HOSTILE, SCHEMA)
    assert connector.manifest == {"health": "/health" + IMG}


@pytest.mark.parametrize("who", ["org_admin", "superuser"])
def test_every_admin_page_shows_connector_text_escaped(request, hostile, admin_client_for, who):
    client = admin_client_for(request.getfixturevalue(who))
    integration_page = reverse("admin:integrations_integration_change", args=[hostile.pk])
    add_page = reverse("admin:integrations_integration_add")
    connector_page = reverse("admin:integrations_connector_change", args=[hostile.connector_id])
    # Pages that show the connector's text (escaped), reached by following links from /admin/.
    expected = {
        integration_page,
        add_page,
        f"{add_page}?connector={hostile.connector_id}",
        reverse("admin:integrations_integration_changelist"),
        connector_page,
        reverse("admin:integrations_connector_changelist"),
        reverse("admin:automations_dashboard"),
    }

    visited, shown = crawl_for_raw(client, RAW, shows=escape(IMG), limit=450)

    assert visited > 50
    assert not expected - shown, sorted(expected - shown)


class BrowserForm(HTMLParser):
    """
    The entries a browser submits for the form with `form_id` pressed with the button `submitter`, in
    document order (HTML's "constructing the entry list"): what is in the page, not what the form class
    declares. Hand-written on the standard library's parser: the project has no HTML library, and a
    Django form would read the page as Django meant it rather than as a browser does.
    """

    def __init__(self, form_id, submitter):
        super().__init__(convert_charrefs=True)
        self.form_id, self.submitter = form_id, submitter
        self.inside = False
        self.entries: list[tuple[str, str]] = []
        self.select = self.option = self.textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            # A browser ignores a <form> inside a form; the first </form> closes it.
            self.inside = self.inside or a.get("id") == self.form_id
            return
        name = a.get("name")
        if not self.inside or "disabled" in a:
            return
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.entries.append((name, a.get("value") or "on"))
            elif kind == "submit":
                if name == self.submitter:
                    self.entries.append((name, a.get("value") or ""))
            elif kind not in ("button", "reset", "image", "file"):
                self.entries.append((name, a.get("value") or ""))
        elif tag == "select" and name:
            self.select = (name, "multiple" in a, [])
        elif tag == "option" and self.select is not None:
            self.option = [a.get("value"), "selected" in a, ""]
            self.select[2].append(self.option)
        elif tag == "textarea" and name:
            self.textarea = [name, ""]

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "option":
            self.option = None
        elif tag == "select" and self.select is not None:
            name, multiple, options = self.select
            chosen = [o for o in options if o[1]] or ([] if multiple else options[:1])
            self.entries += [(name, text.strip() if value is None else value) for value, _, text in chosen]
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            name, text = self.textarea
            self.entries.append((name, text.removeprefix("\n")))
            self.textarea = None

    def handle_data(self, data):
        if self.option is not None:
            self.option[2] += data
        if self.textarea is not None:
            self.textarea[1] += data

    @classmethod
    def submission(cls, page, form_id, submitter="_save"):
        """The entries as a dict of lists, for the test client (repeated names keep their order)."""
        parser = cls(form_id, submitter)
        parser.feed(page)
        data: dict[str, list[str]] = {}
        for name, value in parser.entries:
            data.setdefault(name, []).append(value)
        return data


def test_saving_the_integration_form_as_a_browser_would_keeps_the_notification_address(
    hostile, org_admin, admin_client_for
):
    client = admin_client_for(org_admin)
    url = reverse("admin:integrations_integration_change", args=[hostile.pk])
    before = full_settings(hostile)

    # when the org admin opens the integration and presses Save without changing anything
    data = BrowserForm.submission(client.get(url).content.decode(), "integration_form")
    response = client.post(url, data)

    # then it saved, and nothing the page did not show was submitted
    assert response.status_code == 302, response.content[:3000]
    hostile.refresh_from_db()
    assert hostile.notification_email == NOTIFY
    assert full_settings(hostile) == before
    assert data["notification_email"] == [NOTIFY]


def test_setting_errors_quote_connector_text_escaped(hostile, org_admin, admin_client_for):
    client = admin_client_for(org_admin)
    url = reverse("admin:integrations_integration_change", args=[hostile.pk])
    data = BrowserForm.submission(client.get(url).content.decode(), "integration_form")

    response = client.post(url, {**data, "setting__code": ["nope"]})

    assert response.status_code == 200
    page = response.content.decode()
    assert escape(f"Must match the pattern ^{IMG}$") in page
    assert not [raw for raw in RAW if raw in page]


def test_exceptions_email_shows_connector_text_escaped(hostile, org):
    rows = [(e.pk, e.integration_id, e.kind) for e in hostile.sync_exceptions.all()]

    [(message, _)] = build_messages(org, {"ops@acme.test": rows})

    html_body, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert escape(IMG) in html_body
    assert not [raw for raw in RAW if raw in html_body]
