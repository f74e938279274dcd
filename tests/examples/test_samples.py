"""
The sample 3PL's and channel's reactions (examples/sample_3pl.py, sample_channel.py), each against a stand-in
for the hub's API on 127.0.0.1 that answers as API.md says and records what it was asked: refusing a
request, correcting a tracking number, following corrections and deletes.
The samples against the real hub: tests/e2e_journey/.
"""

import json

import pytest
import sample_3pl
import sample_channel
from _connector import HubClient, JsonServer, Reply

REQUEST = {
    "id": "7",
    "order": {"id": "3", "number": "#3"},
    "status": "pending",
    "lines": [{"sku": "TEE", "quantity": 2, "fulfilled_quantity": 0}, {"sku": "MUG", "quantity": 1}],
}


class FakeHub:
    """Routes of /api/v1 answered from `answers` ((method, path) → a body or a function of the request's)."""

    def __init__(self, answers: dict):
        self.calls: list[tuple[str, str, object]] = []
        routes = {
            (method, "/api/v1" + path): self.route(answer) for (method, path), answer in answers.items()
        }
        self.server = JsonServer("127.0.0.1:0", routes).start()
        self.client = HubClient(self.server.url, "sy_test_key", retries=0)

    def route(self, answer):
        def serve(request):
            body = request.json()
            self.calls.append((request.method, request.path.removeprefix("/api/v1"), body))
            return Reply(200, answer(body) if callable(answer) else answer)

        return serve

    def asked(self, method: str) -> list[tuple[str, object]]:
        return [(path, body) for verb, path, body in self.calls if verb == method]

    def stop(self):
        self.client.close()
        self.server.stop()


@pytest.fixture
def fake_hub():
    made = []

    def make(answers):
        made.append(FakeHub(answers))
        return made[-1]

    yield make
    for hub in made:
        hub.stop()


def warehouse(hub: FakeHub, *args: str) -> sample_3pl.Warehouse:
    tpl = sample_3pl.Warehouse(hub.client, sample_3pl.parse_args(["--hub", "x", "--key", "k", *args]))
    tpl.location = {"id": "2", "name": "Sample 3PL"}
    return tpl


def shipped(body: dict) -> dict:
    """The hub's answer to POST /fulfillments."""
    return {"id": "9", "status": "shipped", **{k: body[k] for k in ("carrier", "tracking_number", "lines")}}


def logged(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_3pl_rejects_a_request_naming_a_sku_it_cannot_ship_with_a_reason(fake_hub, capsys):
    # given a 3PL that cannot ship mugs
    hub = fake_hub(
        {
            ("GET", "/shipping-requests/7"): REQUEST,
            ("POST", "/shipping-requests/7/reject"): {**REQUEST, "status": "rejected"},
        }
    )
    tpl = warehouse(hub, "--refuse-sku", "MUG,CAP")

    # when a request for a T-shirt and a mug reaches it
    tpl.handle("7", via="webhook")

    # then it rejects it, naming the SKU, and neither acknowledges nor ships it
    [(path, body)] = hub.asked("POST")
    assert path == "/shipping-requests/7/reject"
    assert body == {"reason": "Cannot ship MUG from Sample 3PL: stock damaged"}
    assert logged(capsys)[-1]["event"] == "rejected"


def test_the_3pl_corrects_the_tracking_number_of_a_relabeled_parcel(fake_hub, capsys):
    hub = fake_hub(
        {
            ("GET", "/shipping-requests/7"): REQUEST,
            ("POST", "/shipping-requests/7/acknowledge"): {**REQUEST, "status": "acknowledged"},
            ("POST", "/fulfillments"): shipped,
            ("PATCH", "/fulfillments/9"): lambda body: {"id": "9", "status": "shipped", **body},
        }
    )
    tpl = warehouse(hub, "--relabel")

    tpl.handle("7", via="webhook")

    [_, (_, parcel)] = hub.asked("POST")
    assert parcel["external_id"] == "S3PL-7" and parcel["tracking_number"] == "1ZSAMPLE0000000007"
    assert hub.asked("PATCH") == [
        (
            "/fulfillments/9",
            {
                "tracking_number": "1ZSAMPLE0000000007R",
                "tracking_url": "https://tracking.example.com/1ZSAMPLE0000000007R",
            },
        )
    ]
    assert logged(capsys)[-1] | {"ts": 0} == {
        "event": "relabeled",
        "ts": 0,
        "fulfillment": "9",
        "tracking_number": "1ZSAMPLE0000000007R",
    }


def test_the_3pl_leaves_a_deleted_product_out_of_its_stock_pushes(fake_hub, capsys):
    hub = fake_hub({("POST", "/inventory"): {"updated": 1, "errors": []}})
    tpl = warehouse(hub)

    tpl.on_event(
        {"type": "product.deleted", "data": {"id": "4", "sku": "MUG", "archived_at": "2026-01-01T00:00Z"}}
    )
    tpl.push_stock([{"sku": "TEE", "on_hand": 5}, {"sku": "MUG", "on_hand": 3}])

    assert hub.asked("POST") == [("/inventory", {"location": "2", "items": [{"sku": "TEE", "on_hand": 5}]})]
    assert logged(capsys)[0] | {"ts": 0} == {"event": "product_archived", "ts": 0, "sku": "MUG"}


def test_the_channel_follows_a_corrected_then_voided_fulfillment_and_delists_a_deleted_product(
    fake_hub, capsys
):
    # given a channel whose order 3 was marked dispatched by fulfillment 9
    hub = fake_hub({})
    channel = sample_channel.Channel(hub.client, sample_channel.parse_args(["--hub", "x", "--key", "k"]))
    channel.orders["SC-1"] = {
        "id": "3",
        "number": "#SC-1",
        "status": "fulfilled",
        "dispatched": False,
        "fulfillments": [],
    }
    channel.by_hub_id["3"] = "SC-1"
    fulfillment = {"id": "9", "order": "3", "status": "shipped", "carrier": "UPS", "tracking_number": "1Z1"}
    channel.mark_dispatched(fulfillment, via="webhook", confirmed=False)

    # when the 3PL corrects its tracking (twice the same: a webhook and a poll), then voids it
    corrected = {**fulfillment, "tracking_number": "1Z2"}
    channel.apply_correction(corrected, via="webhook")
    channel.apply_correction(corrected, via="poll")
    shown = channel.store(None).body["orders"]["SC-1"]
    assert (shown["dispatched"], shown["fulfillments"]) == (
        True,
        [{"id": "9", "carrier": "UPS", "tracking_number": "1Z2"}],
    )
    channel.apply_correction({**corrected, "status": "canceled"}, via="webhook")

    # then the dispatch is taken back; each change was logged once
    shown = channel.store(None).body["orders"]["SC-1"]
    assert (shown["dispatched"], shown["fulfillments"]) == (False, [])
    events = [line["event"] for line in logged(capsys)]
    assert events == ["order_dispatched", "tracking_updated", "dispatch_withdrawn"]

    # and a deleted product is delisted; a voided fulfillment seen for the first time marks nothing
    channel.on_event({"type": "product.deleted", "data": {"id": "4", "sku": "MUG"}})
    channel.mark_dispatched({**fulfillment, "id": "10", "status": "canceled"}, via="poll", confirmed=True)
    assert channel.store(None).body["delisted"] == ["MUG"]
    assert channel.orders["SC-1"]["fulfillments"] == []
    assert [line["reason"] for line in logged(capsys) if line["event"] == "fulfillment_ignored"] == ["voided"]
    assert hub.calls == []  # all of it from the events' own data
