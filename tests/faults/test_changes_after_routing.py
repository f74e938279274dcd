"""
A change after routing through real processes (#16, item 3): the engines route a channel's order to the 3PL,
the 3PL acknowledges it, the channel re-posts it with a new street; the 3PL's receiver gets a signed
`shipping_request.updated` whose `changes` name the street and whose `data` shows it, and a person gets an
exception. It shares the package's hub (conftest.py) so that it costs no hub of its own.
"""

from harness.hub import order_body

from .conftest import Receiver
from .test_worker_killed import wait_until

NEW_STREET = "9 Elm Rd"


def test_a_new_address_after_acknowledgement_reaches_the_3pl_and_a_person(hub, receivers):
    # given the 3PL's receiver of its shipping requests, and a channel's order the engines routed to it
    receiver = Receiver()
    subscription = hub.subscribe(
        "Warehouse", receivers.start(receiver), ["shipping_request.created", "shipping_request.updated"]
    )
    receiver.secret = subscription["secret"]
    order, _ = hub.push_order_key("Changed", "CHANGE-1")

    def heard(event_type):
        return [
            r
            for r in receiver.requests
            if r.verified and r.data["type"] == event_type and r.data["data"]["order"]["id"] == order["id"]
        ]

    [created] = wait_until(lambda: heard("shipping_request.created"), 60, "the order routed to the 3PL")
    request_id = created.data["data"]["id"]
    with hub.api("Warehouse") as api:
        assert api.post(f"/shipping-requests/{request_id}/acknowledge").status_code == 200

    # when the channel sends the order again with a new street
    body = order_body("CHANGE-1", [{"sku": "F-TEE", "quantity": 1, "unit_price": "1.00"}])  # as pushed
    body["shipping_address"]["line1"] = NEW_STREET
    with hub.api("Changed") as api:
        answer = api.post("/orders", json=body)
    assert answer.status_code == 200, answer.text

    # then the 3PL hears of it, signed, with what changed and the request as it now reads
    [updated] = wait_until(
        lambda: heard("shipping_request.updated"), 60, "shipping_request.updated delivered"
    )
    assert updated.data["changes"] == ["shipping_address.line1"]
    assert updated.data["data"]["id"] == request_id
    assert updated.data["data"]["order"]["shipping_address"]["line1"] == NEW_STREET
    assert updated.data["data"]["status"] == "acknowledged"
    # and a person is told: an open exception on the request, which the 3PL's key sees too
    with hub.api("Warehouse") as api:
        listed = api.get("/exceptions", params={"kind": "changed_after_acknowledged"}).json()["results"]
    assert [(e["entity_type"], e["entity_id"], e["status"]) for e in listed] == [
        ("shipping_request", request_id, "open")
    ]
