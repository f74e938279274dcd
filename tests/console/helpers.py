"""What the console's tests share: the transfer tests' data and counts, and running a command."""

from io import StringIO

from django.core.management import call_command

from integrations.choices import Workflow
from integrations.models import Connector, Integration, IntegrationEvent
from inventory.models import Product, SkuMapping
from orders.models import ShippingMethod, ShippingMethodMapping
from tests.fixtures.integrations import GOOD_SETTINGS

SECRET = GOOD_SETTINGS["api_token"]
# The JSON keeps connector-specific kinds; SKU and shipping-method mappings are rows, exported by hub code.
MAPPINGS = {"locations": {"WH-EAST": "East", "WH-WEST": "West"}}
SKU_MAPPINGS = [{"external_sku": "EXT-1", "sku": "SKU-1"}, {"external_sku": "EXT-2", "sku": "SKU-2"}]
METHOD_MAPPINGS = [{"external_code": "express", "method": "dhl-exp"}]
# Not the channel defaults, so a round trip that fell back to the defaults would show.
WORKFLOWS = {flow.value: flow in (Workflow.ORDERS_IN, Workflow.INVENTORY_IN) for flow in Workflow}


def run(command, *args, **options):
    out = StringIO()
    call_command(command, *args, stdout=out, **options)
    return out.getvalue()


def counts():
    return (
        Connector.objects.count(),
        Integration.objects.count(),
        IntegrationEvent.objects.count(),
        SkuMapping.objects.count(),
        ShippingMethodMapping.objects.count(),
    )


def hub_catalog(organization, skus=("SKU-1", "SKU-2"), methods=("dhl-exp",)):
    """Products and shipping methods with these hub codes in `organization`."""
    products = {sku: Product.objects.create(organization=organization, sku=sku, name=sku) for sku in skus}
    methods = {
        code: ShippingMethod.objects.create(organization=organization, code=code, name=code)
        for code in methods
    }
    return products, methods


def row_mappings(integration):
    """The integration's mapping rows as (external, hub code, hub object's organization id)."""
    return (
        sorted(
            SkuMapping.objects.filter(integration=integration).values_list(
                "external_sku", "product__sku", "product__organization"
            )
        ),
        sorted(
            ShippingMethodMapping.objects.filter(integration=integration).values_list(
                "external_code", "method__code", "method__organization"
            )
        ),
    )
