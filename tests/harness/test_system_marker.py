"""
The `system` marker (tests/conftest.py) is what `make check` leaves out: every place it names must exist
(a moved folder would silently put its real-process tests into `make check`), and the hook marks exactly
the tests under those places and the browser tests.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import conftest

TESTS = Path(conftest.__file__).resolve().parent


def test_every_system_place_exists():
    assert conftest.SYSTEM
    missing = [place for place in conftest.SYSTEM if not (TESTS / place).exists()]
    assert not missing


class Item(SimpleNamespace):
    def get_closest_marker(self, name):
        return next((m for m in self.own if m.name == name), None)

    def add_marker(self, mark):
        self.own.append(mark.mark)


def item(path: str, *marks) -> Item:
    return Item(path=TESTS / path, own=[m.mark for m in marks])


def test_the_hook_marks_real_process_and_browser_tests_only():
    items = {
        "journey": item("e2e_journey/test_journey.py"),
        "fault": item("faults/test_redis_down.py"),
        "logs": item("hardening/test_no_secrets_in_logs.py"),
        "browser elsewhere": item("docs/test_admin_guide.py", pytest.mark.browser),
        "hardening": item("hardening/test_ssrf.py"),
        "api": item("api/test_orders.py"),
        "a name that only starts like one": item("e2e_journeyman/test_x.py"),
    }

    conftest.pytest_collection_modifyitems(None, list(items.values()))

    marked = {name for name, it in items.items() if it.get_closest_marker("system")}
    assert marked == {"journey", "fault", "logs", "browser elsewhere"}
