"""
Encryption at rest for the secrets the hub must be able to read back (integration settings marked
"writeOnly", signing secrets): Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key ring.

settings.ENCRYPTION_KEYS is the ring: the first key encrypts, every key decrypts, so a key is rotated by
putting a new one first, running `manage.py rotate_encryption_keys`, and removing the old one once
`rotate_encryption_keys --check` counts nothing left under it.

Hand-written (about forty lines over MultiFernet) rather than django-fernet-encrypted-fields or the like:
those derive their keys from SECRET_KEY plus salts, which ties every stored secret to SECRET_KEY (rotating
it would make them unreadable) and offers no count of the values still under an old key. Only the default,
for a `make run` with no configuration, is derived from SECRET_KEY.
"""

import base64
import binascii
import functools
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.exceptions import ImproperlyConfigured

DERIVED_KEY_LABEL = b"switchyard-encryption-key"


class DecryptionError(Exception):
    """A stored value that no configured key opens (a key removed too early, or the wrong keys)."""


def derived_key(secret_key: str) -> str:
    """The default key: HMAC-SHA256 of SECRET_KEY under a fixed label (the API_KEY_PEPPERS pattern)."""
    digest = hmac.new(secret_key.encode(), DERIVED_KEY_LABEL, "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode()


def encryption_keys(configured: list[str], secret_key: str) -> list[str]:
    """
    The key ring settings.ENCRYPTION_KEYS holds: the configured keys, checked (ImproperlyConfigured names
    the bad one by position, never by value), or the one derived from SECRET_KEY when none is configured.
    """
    keys = [key.strip() for key in configured if key.strip()]
    for position, key in enumerate(keys, 1):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ImproperlyConfigured(
                f"ENCRYPTION_KEYS: key {position} of {len(keys)} is not a Fernet key (32 bytes in url-safe "
                "base64, 44 characters). Make one with `manage.py rotate_encryption_keys --generate-key`."
            )
    if len(set(keys)) != len(keys):
        raise ImproperlyConfigured("ENCRYPTION_KEYS: the same key is listed twice.")
    return keys or [derived_key(secret_key)]


def generate_key() -> str:
    return Fernet.generate_key().decode()


@functools.cache
def _ring(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    fernets = [Fernet(key) for key in keys]
    return MultiFernet(fernets), fernets[0]


def ring() -> tuple[MultiFernet, Fernet]:
    """(all keys, the primary key) of the ENCRYPTION_KEYS in force (read each time: tests override it)."""
    from django.conf import settings

    return _ring(tuple(settings.ENCRYPTION_KEYS))


def key_count() -> int:
    from django.conf import settings

    return len(settings.ENCRYPTION_KEYS)


def encrypt(text: str) -> str:
    return ring()[0].encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str, *, what: str = "a stored secret") -> str:
    """The plaintext of `token`; DecryptionError (naming `what`) when no configured key opens it."""
    try:
        return ring()[0].decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError(
            f"Cannot decrypt {what}: none of the {key_count()} key(s) in ENCRYPTION_KEYS opens "
            "it. Was the key it was encrypted with removed before `manage.py rotate_encryption_keys` ran, "
            "or are these the wrong keys?"
        ) from exc


def under_primary(token: str) -> bool:
    """Whether the first key of the ring opens `token` (else it still needs an older key)."""
    try:
        ring()[1].decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def opens(token: str) -> bool:
    try:
        ring()[0].decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def reencrypt(token: str, *, what: str = "a stored secret") -> str:
    """`token` under the primary key (the plaintext and its timestamp kept); DecryptionError if unopenable."""
    try:
        return ring()[0].rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError(f"Cannot re-encrypt {what}: no key in ENCRYPTION_KEYS opens it.") from exc
