"""
The sample 3PL's and channel's reactions (examples/sample_3pl.py, sample_channel.py), each against a stand-in
for the hub's API on 127.0.0.1 that answers as docs/connectors/contract.md says and records what it was asked:
refusing a request, correcting a tracking number, following corrections, deletes and changes after routing,
and the Inbox both samples take events through (examples/_inbox.py): the sequence rule, and the catch-up feed
across a restart.
The samples against the real hub: tests/e2e_journey/.
"""

import json

import pytest
import sample_3pl
import sample_channel
from _connector import HubClient, JsonServer, Reply
from _inbox import Inbox, StateFile

REQUEST = {
    "id": "7",
    "order": {"id": "3", "number": "#3"},
    "status": "pending",
    "lines": [{"sku": "TEE", "quantity": 2, "fulfilled_quantity": 0}, {"sku": "MUG", "quantity": 1}],
}


class FakeHub:
    """
    Routes of /api/v1 answered from `answers`: (method, path) → a body, or a function of what was sent (the
    JSON body of a write, the query of a GET, {name: value}).
    """

    def __init__(self, answers: dict):
        self.calls: list[tuple[str, str, object]] = []
        routes = {
            (method, "/api/v1" + path): self.route(answer) for (method, path), answer in answers.items()
        }
        self.server = JsonServer("127.0.0.1:0", routes).start()
        self.client = HubClient(self.server.url, "sy_test_key", retries=0)

    def route(self, answer):
        def serve(request):
            sent = request.json() if request.body else {k: v[-1] for k, v in request.query.items()}
            self.calls.append((request.method, request.path.removeprefix("/api/v1"), sent))
            return Reply(200, answer(sent) if callable(answer) else answer)

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


def warehouse(hub: FakeHub, *args: str, state: StateFile | None = None) -> sample_3pl.Warehouse:
    tpl = sample_3pl.Warehouse(hub.client, sample_3pl.parse_args(["--hub", "x", "--key", "k", *args]), state)
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
    assert logged(capsys)[0] | {"ts": 0} == {
        "event": "product_archived",
        "ts": 0,
        "sku": "MUG",
        "via": "webhook",
    }


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


def changed_request(line1: str, updated_at: str, phone: str = "555-0100") -> dict:
    """REQUEST as GET (or an event) shows it, shipping to `line1`, last changed at `updated_at`."""
    order = {
        **REQUEST["order"],
        "shipping_address": {"line1": line1, "country": "US"},
        "customer": {"name": "Grace", "phone": phone},
    }
    return {**REQUEST, "order": order, "shipping_method": "standard", "updated_at": updated_at}


def test_the_3pl_labels_the_parcel_with_the_address_a_change_after_routing_brought(fake_hub, capsys):
    # given a request routed to the 3PL for 1 Old St; the hub's GET answered before the change landed
    hub = fake_hub(
        {
            ("GET", "/shipping-requests/7"): changed_request("1 Old St", "2026-01-01T10:00:00Z"),
            ("POST", "/shipping-requests/7/acknowledge"): {**REQUEST, "status": "acknowledged"},
            ("POST", "/fulfillments"): shipped,
        }
    )
    tpl = warehouse(hub)
    inbox = Inbox(tpl.on_event)
    created = changed_request("1 Old St", "2026-01-01T10:00:00Z")
    assert inbox.take({"id": "evt_1", "type": "shipping_request.created", "sequence": 1, "data": created})

    # when the channel corrects the street: shipping_request.updated, what changed beside data
    update = {
        "id": "evt_2",
        "type": "shipping_request.updated",
        "sequence": 2,
        "changes": ["shipping_address.line1", "customer.phone"],
        "data": changed_request("9 Pier Rd", "2026-01-01T10:05:00Z", phone="555-0199"),
    }
    assert inbox.take(update) == "handled"
    tpl.handle("7", via="webhook")

    # then its copy takes the new street, and the parcel is labelled with it, not with GET's older answer
    lines = logged(capsys)
    [changed] = [line for line in lines if line["event"] == "shipping_request_changed"]
    assert (changed["changes"], changed["ship_to"]["line1"]) == (
        ["shipping_address.line1", "customer.phone"],
        "9 Pier Rd",
    )
    label = lines[-1]
    assert label["event"] == "shipped"
    assert (label["ship_to"]["line1"], label["contact"]["phone"], label["shipping_method"]) == (
        "9 Pier Rd",
        "555-0199",
        "standard",
    )
    # and the request was queued once, though two events named it
    assert list(tpl.work.queue) == [("handle", "7", "webhook")]


def test_the_3pl_that_already_shipped_cannot_follow_a_change_and_tells_the_org_admin(fake_hub, capsys):
    # given a request the 3PL shipped to 1 Old St
    old = changed_request("1 Old St", "2026-01-01T10:00:00Z")
    hub = fake_hub(
        {
            ("GET", "/shipping-requests/7"): {**old, "status": "acknowledged"},
            ("POST", "/fulfillments"): shipped,
            ("POST", "/exceptions"): lambda body: {"id": "1", **body},
        }
    )
    tpl = warehouse(hub)
    tpl.handle("7", via="webhook")

    # when the change reaches it afterwards (the hub took it while the request was still open)
    tpl.on_event(
        {
            "type": "shipping_request.updated",
            "sequence": 2,
            "changes": ["shipping_address.line1"],
            "data": changed_request("9 Pier Rd", "2026-01-01T10:05:00Z"),
        }
    )
    task = tpl.work.get_nowait()
    tpl.report_change(*task[1:])

    # then it says where the parcel went, and reports an exception on the request for a person
    said = [line for line in logged(capsys) if line["event"] == "changed_after_shipping"]
    assert [line["shipped_to"]["ship_to"]["line1"] for line in said] == ["1 Old St"]
    [body] = [body for path, body in hub.asked("POST") if path == "/exceptions"]
    assert (body["entity_type"], body["entity_id"]) == ("shipping_request", "7")
    assert "shipping_address.line1" in body["message"]


def test_an_update_that_arrives_first_makes_the_created_older_news_and_still_ships_the_request(fake_hub):
    tpl = warehouse(fake_hub({}))
    inbox = Inbox(tpl.on_event)
    data = changed_request("9 Pier Rd", "2026-01-01T10:05:00Z")

    outcomes = [
        inbox.take({"id": "evt_2", "type": "shipping_request.updated", "sequence": 2, "data": data}),
        inbox.take({"id": "evt_1", "type": "shipping_request.created", "sequence": 1, "data": REQUEST}),
    ]

    assert outcomes == ["handled", "stale"]
    assert list(tpl.work.queue) == [("handle", "7", "webhook")]
    assert tpl.requests["7"]["order"]["shipping_address"]["line1"] == "9 Pier Rd"


def test_the_channel_marks_a_fulfillment_whose_correction_came_before_its_creation(fake_hub, capsys):
    hub = fake_hub({})
    channel = sample_channel.Channel(
        hub.client, sample_channel.parse_args(["--hub", "x", "--key", "k", "--no-confirm"])
    )
    channel.orders["SC-1"] = {
        "id": "3",
        "number": "#SC-1",
        "status": "new",
        "dispatched": False,
        "fulfillments": [],
    }
    channel.by_hub_id["3"] = "SC-1"
    inbox = Inbox(channel.on_event)
    parcel = {"id": "9", "order": "3", "status": "shipped", "carrier": "UPS", "tracking_number": "1Z1"}

    # when fulfillment.updated (number 2) arrives before fulfillment.created (number 1)
    assert (
        inbox.take(
            {
                "id": "evt_2",
                "type": "fulfillment.updated",
                "sequence": 2,
                "data": {**parcel, "tracking_number": "1Z2"},
            }
        )
        == "handled"
    )
    assert (
        inbox.take({"id": "evt_1", "type": "fulfillment.created", "sequence": 1, "data": parcel}) == "stale"
    )
    while not channel.work.empty():
        _, data, created_at, via = channel.work.get_nowait()
        channel.fulfillment_event(data, created_at, via=via)

    # then the order is dispatched once, with the tracking number as it now stands
    assert channel.orders["SC-1"]["fulfillments"] == [{"id": "9", "carrier": "UPS", "tracking_number": "1Z2"}]
    assert [line["event"] for line in logged(capsys)] == ["order_dispatched"]


def feed_of(events: list[dict], hub_url: list[str], page: int = 2):
    """GET /webhook-events as the hub answers it: after an id (or since a time), `page` a page, `next`."""

    def answer(query):
        start = int(query.get("cursor", 0))
        if not start and "after" in query:
            start = next(i for i, e in enumerate(events) if e["id"] == query["after"]) + 1
        elif not start:
            start = sum(e["created_at"] < query["updated_since"] for e in events)
        results = events[start : start + page]
        more = start + page < len(events)
        return {
            "results": results,
            "next": f"{hub_url[0]}/api/v1/webhook-events?cursor={start + page}" if more else None,
        }

    return answer


def test_a_sample_that_was_stopped_catches_up_from_the_feed_once_whatever_came_by_webhook(
    fake_hub, tmp_path, capsys
):
    # given the sample 3PL with a state file: its first run read the feed (from its start on) and then took
    # the deletion of MUG by webhook
    events, url = [], []
    hub = fake_hub({("GET", "/webhook-events"): feed_of(events, url)})
    url.append(hub.server.url)
    path = str(tmp_path / "state.json")

    def deleted(n, sku, sequence=1):
        return {
            "id": f"evt_{n}",
            "type": "product.deleted",
            "created_at": f"2099-01-01T00:00:0{n}Z",
            "sequence": sequence,
            "data": {"id": sku, "sku": sku},
        }

    first = warehouse(hub, state=StateFile(path))
    first_inbox = Inbox(first.on_event, first.state)
    assert first_inbox.catch_up(hub.client, sample_3pl.EVENTS) == 0
    events.append(deleted(1, "MUG"))
    assert first_inbox.take(events[0]) == "handled"

    # when it is stopped, three more events happen (one of them an older number of CAP's), and it starts again
    events += [deleted(2, "CAP", 2), deleted(3, "TEE"), deleted(4, "CAP", 1)]
    tpl = warehouse(hub, state=StateFile(path))
    inbox = Inbox(tpl.on_event, tpl.state)
    handled = inbox.catch_up(hub.client, sample_3pl.EVENTS)

    # then the feed, read from the first start in pages, brings each event once: MUG's was handled already
    lines = logged(capsys)
    assert [(line["event_id"], line["outcome"]) for line in lines if line["event"] == "feed"] == [
        ("evt_1", "duplicate"),
        ("evt_2", "handled"),
        ("evt_3", "handled"),
        ("evt_4", "stale"),
    ]
    assert handled == 2
    assert [(line["sku"], line["via"]) for line in lines if line["event"] == "product_archived"] == [
        ("MUG", "webhook"),
        ("CAP", "feed"),
        ("TEE", "feed"),
    ]
    assert tpl.archived == {"MUG", "CAP", "TEE"}  # MUG's from the state file: its event is not acted on again
    asked = [query for _, path_, query in hub.calls if path_ == "/webhook-events"]
    assert asked[0]["updated_since"] and asked[0]["type"] == ",".join(sample_3pl.EVENTS)

    # and a webhook retry of an event the feed brought, then the next catch-up, act on nothing
    assert inbox.take(events[2]) == "duplicate"
    assert inbox.catch_up(hub.client, sample_3pl.EVENTS) == 0
    assert hub.calls[-1][2]["after"] == "evt_4"
    assert json.loads((tmp_path / "state.json").read_text())["inbox"]["feed_after"] == "evt_4"
