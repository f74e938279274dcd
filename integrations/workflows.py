"""
The workflow switches of an integration (orders in, shipping requests out, ...): an inbound write for a flow
that is off is refused, and nothing goes out for it.
"""

from core.errors import DomainError

from .choices import IntegrationStatus, Workflow
from .models import Integration


class WorkflowDisabled(DomainError):
    """An inbound write for a flow the integration has switched off (API: 403 `workflow_disabled`)."""

    api_code = "workflow_disabled"


def require_workflow(integration: Integration, flow) -> None:
    """Raise WorkflowDisabled unless the integration's switch for `flow` (e.g. orders_in) is on."""
    flow = Workflow(flow)
    if not integration.workflow_enabled(flow):
        raise WorkflowDisabled(f"The “{flow.label}” flow of {integration.name!r} is switched off.")


def may_send(integration: Integration, flow) -> bool:
    """Whether an outbound event or call for `flow` may go to this integration now."""
    return integration.status != IntegrationStatus.DISABLED and integration.workflow_enabled(flow)
