"""An organization's engine settings (EngineSettings): read by every engine and the pages that show them."""

from .models import EngineSettings


def engine_settings(organization):
    """The organization's engine settings; every engine on, with defaults, until an admin changes them."""
    org_id = organization if isinstance(organization, int) else organization.pk
    settings, _ = EngineSettings.objects.get_or_create(organization_id=org_id)
    return settings


def engine_enabled(organization, engine) -> bool:
    org_id = organization if isinstance(organization, int) else organization.pk
    flag = (
        EngineSettings.objects.filter(organization_id=org_id)
        .values_list(f"{engine}_enabled", flat=True)
        .first()
    )
    return True if flag is None else flag  # no row yet: the defaults, every engine on
