import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The fixture users' passwords are irrelevant here; PBKDF2 would cost ~0.3 s a user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
