"""
The key's wire format and its stored hash. Secrets carry 256 random bits, so a slow password hasher buys
nothing (and costs ~0.3 s a check); they are stored as HMAC-SHA256 keyed with a server-side pepper
(settings.API_KEY_PEPPERS, rotatable by id), looked up by their public prefix and compared in constant time.
"""

import hmac
import re
import secrets
import string

from django.conf import settings

KEY_PATTERN = re.compile(r"^sy_([a-z0-9]{8})_([A-Za-z0-9_-]{43,128})$")
PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def current_pepper_id() -> int:
    return max(settings.API_KEY_PEPPERS)


def hash_secret(secret: str, pepper_id: int) -> str:
    pepper = settings.API_KEY_PEPPERS[pepper_id]
    return hmac.new(pepper.encode(), secret.encode(), "sha256").hexdigest()


def new_prefix_candidate() -> str:
    return "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 32 bytes = 256 bits, 43 characters


def plaintext(prefix: str, secret: str) -> str:
    """The bearer string handed out once: `sy_<prefix>_<secret>` (KEY_PATTERN reads it back)."""
    return f"sy_{prefix}_{secret}"
