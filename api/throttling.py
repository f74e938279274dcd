"""
The API's rate limits, with RateLimit-* headers on every response they apply to:

* per key (settings.API_RATE_LIMIT, e.g. "1200/min"), for requests made with a good key;
* per client address (settings.API_ANON_RATE_LIMIT) for requests the hub took no key for — none given, or
  one refused at authentication — counted there (api/authentication.py), before the refusal is
  answered: otherwise anyone could try keys without limit.

DRF's SimpleRateThrottle keeps a list of timestamps per client and writes it back (read-modify-write, so
concurrent processes lose counts) and sets no RateLimit headers; this is a fixed-window counter on the
shared cache's atomic add and incr (Redis in production, core.cache.LockedFileBasedCache without it), so
a limit holds across every web process.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


def over_limit(request, bucket: str, rate: str) -> int | None:
    """Count the request in `bucket`; the seconds to wait if that puts it over `rate`, else None."""
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    reset = int((window + 1) * period - now) or 1
    try:
        used = _count(f"ratelimit:{bucket}:{window}", period)
    except Exception as exc:  # the cache (Redis) down: let the request through rather than fail it
        # Fail open: refusing every request while Redis is down would turn a cache outage into an API
        # outage, and the limit only guards capacity; without a count there are no RateLimit headers.
        logger.warning("Rate limit not applied, the cache is unavailable: %s", exc)
        return None
    request._ratelimit = (limit, max(limit - used, 0), reset)
    return reset if used > limit else None


def _count(bucket: str, period: int) -> int:
    cache.add(bucket, 0, timeout=period + 5)
    try:
        return cache.incr(bucket)
    except ValueError:  # evicted between add and incr
        cache.set(bucket, 1, timeout=period + 5)
        return 1


class KeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        key = request.auth
        if key is None:  # a view served without authentication (the schema, the docs)
            return True
        self._wait = over_limit(request, key.prefix, settings.API_RATE_LIMIT)
        return self._wait is None

    def wait(self):
        return self._wait


def throttle_address(request, ip: str | None) -> None:
    """Count a request made without a usable key against its client address; Throttled when over the limit."""
    # The bucket is "ip:<address>": key prefixes are eight letters and digits, so the two never meet.
    wait = over_limit(request, f"ip:{ip or '-'}", settings.API_ANON_RATE_LIMIT)
    if wait is not None:
        raise exceptions.Throttled(wait)


def add_headers(request, response):
    info = getattr(request, "_ratelimit", None)
    if info:
        limit, remaining, reset = info
        response["RateLimit-Limit"] = str(limit)
        response["RateLimit-Remaining"] = str(remaining)
        response["RateLimit-Reset"] = str(reset)
    return response
