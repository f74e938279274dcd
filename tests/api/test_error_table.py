"""
The error table of docs/connectors/10-errors.md is every code the API can answer, with its status (issue 17).
Every answer's code comes from the catalogue core.errors.CODES (ApiError and DomainError refuse any other;
api/errors.py translates DRF's and Django's errors to codes of it), so the table is compared with it both ways.
"""

import re
from pathlib import Path

import pytest

from api.errors import ApiError
from core.errors import CODES, DomainError

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "connectors" / "10-errors.md"
ROW = re.compile(r"^\| (\d{3}) \| (`[a-z_]+`(?:, `[a-z_]+`)*) \|")


def table() -> dict[str, int]:
    """{code: status} as the chapter's table lists them."""
    rows = {}
    for line in TABLE.read_text().splitlines():
        if match := ROW.match(line):
            for code in re.findall(r"`([a-z_]+)`", match[2]):
                assert code not in rows, f"{code} is in the table twice"
                rows[code] = int(match[1])
    return rows


def test_the_table_lists_every_code_of_the_catalogue_and_no_other():
    documented = table()

    assert sorted(set(CODES) - set(documented)) == [], "codes the API answers that the table leaves out"
    assert sorted(set(documented) - set(CODES)) == [], "codes in the table that the API never answers"
    assert documented == CODES, "a code's status in the table differs from the catalogue's"


def test_no_answer_can_carry_a_code_outside_the_catalogue():
    with pytest.raises(ValueError):
        ApiError("teapot", "I am one.")
    with pytest.raises(TypeError):
        type("Refusal", (DomainError,), {"api_code": "teapot"})


def test_the_http_level_codes_the_table_now_lists_are_answered_as_it_says(api_client, integration_key):
    client = api_client(integration_key)

    wrong_method = client.put("/api/v1/orders", {}, format="json")
    wrong_accept = client.get("/api/v1/me", HTTP_ACCEPT="text/html")

    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    assert "POST" in wrong_method["Allow"] and "PUT" not in wrong_method["Allow"]
    assert wrong_accept.status_code == 406
