"""Workflow switches: pre-set from the connector type; a switched-off flow moves nothing."""

import pytest

from integrations import configuration, lifecycle, workflows
from integrations.choices import Workflow


def test_defaults_follow_connector_type(org, channel_connector, tpl_connector, make_integration):
    shop = make_integration(org, channel_connector, "Shop")
    warehouse = make_integration(org, tpl_connector, "Warehouse")

    assert shop.flow_orders_in and shop.flow_fulfillments_out and shop.flow_inventory_out
    assert not shop.flow_fulfillments_in and not shop.flow_shipping_requests_out
    assert (
        warehouse.flow_shipping_requests_out
        and warehouse.flow_fulfillments_in
        and warehouse.flow_inventory_in
    )
    assert not warehouse.flow_orders_in


def test_switched_off_inbound_flow_is_refused(integration):
    integration.flow_orders_in = False

    with pytest.raises(workflows.WorkflowDisabled) as refused:
        workflows.require_workflow(integration, Workflow.ORDERS_IN)

    assert refused.value.api_code == "workflow_disabled"
    workflows.require_workflow(integration, Workflow.FULFILLMENTS_OUT)  # still on: no error


def test_outbound_needs_the_switch_and_an_enabled_integration(integration):
    assert workflows.may_send(integration, Workflow.FULFILLMENTS_OUT)

    integration.flow_fulfillments_out = False
    assert not workflows.may_send(integration, Workflow.FULFILLMENTS_OUT)

    integration.flow_fulfillments_out = True
    lifecycle.disable(integration)
    assert not workflows.may_send(integration, Workflow.FULFILLMENTS_OUT)


def test_create_with_explicit_workflows(org, channel_connector):
    integration = configuration.create_integration(
        org, channel_connector, "Quiet shop", workflows={"orders_in": False, "products_in": True}
    )

    assert not integration.flow_orders_in and integration.flow_products_in
