"""
Per-key rate limit (settings.API_RATE_LIMIT, e.g. "1200/min") with RateLimit-* headers on every response.

DRF's SimpleRateThrottle keeps a list of timestamps per client and writes it back (read-modify-write, so
concurrent processes lose counts) and sets no RateLimit headers; this is a fixed-window counter on the
shared cache's atomic incr (Redis in production), so the limit holds across every web process.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


class KeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        key = request.auth
        if key is None:
            return True
        limit, period = parse_rate(settings.API_RATE_LIMIT)
        now = time.time()
        window = int(now // period)
        reset = int((window + 1) * period - now) or 1
        bucket = f"ratelimit:{key.prefix}:{window}"
        try:
            used = self._count(bucket, period)
        except Exception as exc:  # the cache (Redis) down: let the request through rather than fail it
            # Fail open: refusing every request while Redis is down would turn a cache outage into an API
            # outage, and the limit only guards capacity; without a count there are no RateLimit headers.
            logger.warning("Rate limit not applied, the cache is unavailable: %s", exc)
            return True
        request._ratelimit = (limit, max(limit - used, 0), reset)
        self._wait = reset
        return used <= limit

    @staticmethod
    def _count(bucket: str, period: int) -> int:
        cache.add(bucket, 0, timeout=period + 5)
        try:
            return cache.incr(bucket)
        except ValueError:  # evicted between add and incr
            cache.set(bucket, 1, timeout=period + 5)
            return 1

    def wait(self):
        return self._wait


def add_headers(request, response):
    info = getattr(request, "_ratelimit", None)
    if info:
        limit, remaining, reset = info
        response["RateLimit-Limit"] = str(limit)
        response["RateLimit-Remaining"] = str(remaining)
        response["RateLimit-Reset"] = str(reset)
    return response
