"""
No secret in any log (issue 14, finding 6): the hub as real processes (gunicorn with the repository's
config/gunicorn.py, a Celery worker, beat; harness/) is sent API keys every way a client might —
as a bearer token, as an HTTP Basic user name or password, as `?api_key=`, and wrong ones — and signs a
webhook; then no log of any process holds a key, a key's secret part or the webhook's signing secret.
"""

import base64
import re
import secrets
from pathlib import Path

import httpx
import pytest

from harness.fixtures import (  # noqa: F401 - fixtures and the report hook, registered by being here
    _log_mark,
    hub_on_own_database,
    pytest_runtest_makereport,
    receivers,
)
from harness.procs import ROOT
from harness.receivers import Receiver

# Redis db numbers of this hub: the suite uses 0 and 1, the journey 5 and 6, the connector guide 7 and 8.
REDIS_DBS = (9, 10)
INTEGRATIONS = [("Shop", "custom-channel")]
PRODUCTS = [{"sku": "LOG-TEE", "name": "Log tee", "price": "12.50"}]
ACCESS_LINE = re.compile(r'"GET /api/v1/me[ ?]')


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """gunicorn, worker and beat on a migrated database of their own, with one organization and its keys."""
    with hub_on_own_database(tmp_path_factory.mktemp("logs"), "logs", REDIS_DBS) as hub:
        hub.setup_organization("logs", INTEGRATIONS)
        hub.start_processes()
        yield hub


def forms_of(secret: str) -> set[str]:
    """A secret as a log could hold it: whole, the secret part of a key, and inside a Basic header."""
    found = {secret}
    if match := re.fullmatch(r"sy_[a-z0-9]{8}_(.+)", secret):
        found.add(match.group(1))
    found |= {
        base64.b64encode(f"{secret}:".encode()).decode(),
        base64.b64encode(f"x:{secret}".encode()).decode(),
    }
    return found


def test_the_config_access_log_format_has_no_user_and_no_query_string():
    # The one place every gunicorn command takes its access log format from (config/gunicorn.py).
    namespace: dict = {}
    exec((ROOT / "config" / "gunicorn.py").read_text(), namespace)  # noqa: S102 - our own config file

    fmt = namespace["access_log_format"]
    assert "%(U)s" in fmt and "%(s)s" in fmt
    assert not {"%(u)s", "%(r)s", "%(q)s", "%(f)s"} & set(re.findall(r"%\([^)]*\)s", fmt))
    assert "%({" not in fmt  # no header or environ atoms (Authorization, QUERY_STRING…)


def test_no_key_or_signing_secret_reaches_any_log(hub, receivers):  # noqa: F811 - the fixture imported above
    key, admin_key = hub.keys["Shop"], hub.keys["admin"]
    wrong = f"sy_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    receiver = Receiver(answers=[(500, {})])  # the first delivery fails: the worker logs a retry as well
    subscription = hub.subscribe("Shop", receivers.start(receiver), ["order.created"])
    receiver.secret = subscription["secret"]

    logged_before = len(hub.procs["gunicorn"].text())  # start-up's own requests are not ours

    # when the key is sent every way a client might, and a wrong one too
    with httpx.Client(base_url=hub.url + "/api/v1", timeout=15) as http:
        answers = {
            "bearer": http.get("/me", headers={"Authorization": f"Bearer {key}"}),
            "basic user": http.get("/me", auth=(key, "")),
            "basic password": http.get("/me", auth=("connector", key)),
            "query": http.get("/me", params={"api_key": key}),
            "wrong bearer": http.get("/me", headers={"Authorization": f"Bearer {wrong}"}),
            "wrong basic user": http.get("/me", auth=(wrong, "")),
            "wrong query": http.get("/me", params={"api_key": wrong}),
        }
        pushed = http.post(
            "/products/bulk", json={"products": PRODUCTS}, headers={"Authorization": f"Bearer {admin_key}"}
        )
    # and the worker has work to log: an order, its webhook failed once, then delivered
    hub.push_order("Shop", "LOG-1", [{"sku": "LOG-TEE", "quantity": 1, "unit_price": "12.50"}])
    first, second = receiver.wait_for(2, timeout=60)
    hub.procs["worker"].wait_for_text("succeeded in")

    assert {name: a.status_code for name, a in answers.items()} == {
        "bearer": 200,
        "basic user": 401,
        "basic password": 401,
        "query": 401,
        "wrong bearer": 401,
        "wrong basic user": 401,
        "wrong query": 401,
    }
    assert pushed.status_code == 200, pushed.text
    assert (first.status, second.status, second.verified) == (500, 200, True)

    # then no log holds any form of a secret
    logs = {name: proc.log_path for name, proc in hub.procs.items()}
    assert set(logs) >= {"gunicorn", "worker", "beat"}
    secrets_sent = {"key": key, "admin key": admin_key, "wrong key": wrong, "signing secret": receiver.secret}
    leaks = [
        f"{what} in the {name} log"
        for name, path in logs.items()
        for what, secret in secrets_sent.items()
        for form in forms_of(secret)
        if form in Path(path).read_text(errors="replace")
    ]
    assert not leaks, leaks

    # and the logs searched are the ones that saw it all: every request line, the worker's tasks
    gunicorn_log = Path(logs["gunicorn"]).read_text(errors="replace")
    assert len(ACCESS_LINE.findall(gunicorn_log[logged_before:])) == len(answers), gunicorn_log[-3000:]
    assert '"POST /api/v1/products/bulk' in gunicorn_log
    assert "succeeded in" in Path(logs["worker"]).read_text(errors="replace")
