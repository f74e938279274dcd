import pytest


@pytest.fixture(autouse=True)
def fast_api_tests(settings):
    """What these tests never look at, made cheap: fixture users' passwords, and static files."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Each test client loads the middleware anew, and WhiteNoise would scan ~700 static files (~30 ms).
    settings.WHITENOISE_USE_FINDERS = False
