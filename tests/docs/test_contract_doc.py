"""docs/connectors/contract.md names the event types the hub sends: every one, and nothing else."""

import re
from pathlib import Path

from integrations.choices import EventType

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "connectors" / "contract.md"


def listed_event_types(text: str) -> list[str]:
    (bullet,) = re.findall(r"^\* Event types: (.*?)(?=^\S|^\* |\Z)", text, re.M | re.S)
    return re.findall(r"`([a-z_]+\.[a-z_]+)`", bullet)


def test_the_contract_lists_every_event_type_once():
    listed = listed_event_types(CONTRACT.read_text())

    assert sorted(listed) == sorted(EventType.values)
    assert len(listed) == len(set(listed))


def test_a_missing_event_type_shows():
    text = "* Event types: `order.created`, `order.updated`.\n* Next.\n"

    assert listed_event_types(text) == ["order.created", "order.updated"]
