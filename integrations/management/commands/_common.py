"""Look-ups and error wording shared by the integration support commands (not a command itself)."""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.management.base import CommandError

from integrations.choices import IntegrationStatus
from integrations.models import Integration
from organizations.models import Organization

# Recorded as the actor of every event a support command causes.
ACTOR = "command"


def get_organization(slug: str) -> Organization:
    try:
        return Organization.objects.get(slug=slug)
    except Organization.DoesNotExist:
        raise CommandError(f"Unknown organization {slug!r}.") from None


def get_integration(pk: int) -> Integration:
    try:
        return Integration.objects.select_related("organization", "connector").get(pk=pk)
    except Integration.DoesNotExist:
        raise CommandError(f"No integration with id {pk}.") from None


def check_status(value: str) -> IntegrationStatus:
    # Checked here, not by argparse `choices`: call_command does not apply choices to keyword options.
    try:
        return IntegrationStatus(value)
    except ValueError:
        raise CommandError(
            f"Unknown status {value!r}; one of: {', '.join(IntegrationStatus.values)}."
        ) from None


def describe(exc: ValidationError) -> str:
    """A service's ValidationError as one readable text: "field: message" per field, plain otherwise."""
    if not hasattr(exc, "error_dict"):
        return " ".join(exc.messages)
    return "; ".join(
        " ".join(messages) if field in (NON_FIELD_ERRORS, "__all__") else f"{field}: {' '.join(messages)}"
        for field, messages in exc.message_dict.items()
    )
