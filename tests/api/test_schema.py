"""The OpenAPI schema of the connector API is valid and generated without a warning (every route documented)."""

import io

from django.core.management import call_command


def test_schema_validates_without_warnings():
    out = io.StringIO()

    # --fail-on-warn turns any drf-spectacular warning (an unresolvable type, a colliding name) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)

    assert "/api/v1/exceptions" in out.getvalue()
