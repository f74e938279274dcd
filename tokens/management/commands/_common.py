"""Argument checks and output shared by the key support commands (not a command itself)."""

from datetime import datetime, timedelta

from django.core.management.base import CommandError
from django.utils import timezone

from tokens import grants as grant_registry
from tokens.models import ApiKey

NAME_MAX = ApiKey._meta.get_field("name").max_length

GRANTS_HELP = (
    "Comma-separated grants (resource:access), e.g. orders:read,orders:write. Known: "
    + ", ".join(grant_registry.GRANTS)
    + "."
)
EXPIRES_HELP = "The key expires this many days from now (a whole number above 0); default: never."


def parse_grants(value: str | None) -> list[str] | None:
    """The --grants value as normalized grants; None when it was not given."""
    if value is None:
        return None
    try:
        grants = grant_registry.normalize(value)
    except grant_registry.UnknownGrant as exc:
        raise CommandError(str(exc)) from None
    if not grants:
        raise CommandError("--grants names no grant; give at least one, e.g. --grants orders:read.")
    return grants


def expires_at(days) -> datetime | None:
    """now + `days` days for --expires-in-days, None when it was not given."""
    if days is None:
        return None
    try:
        days = int(days)  # call_command passes optional keyword options through without argparse's type
    except (TypeError, ValueError):
        raise CommandError(f"--expires-in-days must be a whole number of days, not {days!r}.") from None
    if days <= 0:
        raise CommandError(f"--expires-in-days must be at least 1, not {days}.")
    try:
        return timezone.now() + timedelta(days=days)
    except OverflowError:
        raise CommandError(f"--expires-in-days {days} is too far in the future.") from None


def key_name(value: str) -> str:
    name = " ".join(value.split())
    if not name:
        raise CommandError("The key name must not be blank.")
    if len(name) > NAME_MAX:
        raise CommandError(f"The key name is longer than {NAME_MAX} characters.")
    return name


def describe_key(key: ApiKey) -> list[str]:
    """What support staff need to see about a new key: never its secret."""
    expiry = f"{key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "never"
    return [
        f"Key {key.display} {key.name!r} ({key.get_kind_display().lower()}), expires: {expiry}",
        f"Grants: {', '.join(key.grants) or '(none)'}",
    ]


def write_plaintext(stdout, plaintext: str) -> None:
    """The key alone on the last line, so scripts can take it with `tail -1`."""
    stdout.write("Store this key now; it cannot be shown again:")
    stdout.write(plaintext)
