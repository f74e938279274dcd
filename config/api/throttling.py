"""
Per-key rate limit (settings.API_RATE_LIMIT, e.g. "1200/min") with RateLimit-* headers on every response.

DRF's SimpleRateThrottle keeps a list of timestamps per client and writes it back (read-modify-write, so
concurrent processes lose counts) and sets no RateLimit headers; this is a fixed-window counter on the
shared cache's atomic incr (Redis in production), so the limit holds across every web process.
"""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

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
        cache.add(bucket, 0, timeout=period + 5)
        try:
            used = cache.incr(bucket)
        except ValueError:  # evicted between add and incr
            cache.set(bucket, 1, timeout=period + 5)
            used = 1
        request._ratelimit = (limit, max(limit - used, 0), reset)
        self._wait = reset
        return used <= limit

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
