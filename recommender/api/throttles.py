"""Rate limits of the endpoints every page calls: event ingestion, recommendations, profile writes.

Rates come from ``RECOMMENDER["EVENTS_THROTTLE_RATE"]``, ``["RECOMMENDATIONS_THROTTLE_RATE"]``
and ``["PROFILE_THROTTLE_RATE"]`` (``"<n>/<second|minute|hour|day>"``, or None for no limit),
not from DRF's ``DEFAULT_THROTTLE_RATES``, so a host configures the app in one place.

Who is counted: a signed-in user by account, anyone else by client address. The address is
``REMOTE_ADDR``; ``X-Forwarded-For`` is read only when the host says how many proxies of its
own append to it (``NUM_PROXIES``), because anyone can write that header and a fresh value per
request would be a fresh allowance. IPv6 addresses are counted per /64 network, the block one
subscriber gets.

What is counted: each request costs ``cost`` units; the events endpoint charges one unit per
event of the batch (at least one per request), so 500 events in one batch use as much of the
allowance as 500 batches of one. A window starts with the first request of an identity and
lasts the rate's period. The counters live in the app's cache (``CACHE_ALIAS``); when that
cache is down the request is let through: a broken cache must not take the shop down with it.
"""

import ipaddress
import logging

from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from ..conf import settings

logger = logging.getLogger(__name__)
IPV6_NETWORK_PREFIX = 64


def client_address(request, num_proxies: int) -> str:
    """The client's address as the host's own proxies saw it (see the module docstring)."""
    address = request.META.get("REMOTE_ADDR", "") or ""
    if num_proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            address = forwarded[-min(num_proxies, len(forwarded))]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_NETWORK_PREFIX}", strict=False))
    return str(parsed)


class RecommenderRateThrottle(SimpleRateThrottle):
    """Counts units per user (or per address when anonymous) against a ``RECOMMENDER`` rate."""

    rate_setting = None  # name of the RECOMMENDER key holding the rate

    def __init__(self):
        # The rate is read per request (not at import), so override_settings applies.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.retry_after = None

    @property
    def cache(self):
        return caches[settings.CACHE_ALIAS]

    def get_rate(self):
        """The configured rate string, or None for no limit."""
        return getattr(settings, self.rate_setting)

    def get_ident(self, request):
        return client_address(request, settings.NUM_PROXIES)

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        ident = f"user-{user.pk}" if user is not None and user.is_authenticated else f"addr-{self.get_ident(request)}"
        return f"recommender:throttle:{self.scope}:{ident}"

    def allow_request(self, request, view, cost=1):
        """Charge ``cost`` units; False (and ``wait()`` says how long) when that passes the rate."""
        if self.rate is None:
            return True
        try:
            return self._charge(self.get_cache_key(request, view), cost)
        except Exception:
            logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)
            return True

    def _charge(self, key, cost):
        now = self.timer()
        started, used = self.cache.get(key) or (now, 0)
        if now - started >= self.duration:
            started, used = now, 0
        if used + cost > self.num_requests:
            self.retry_after = max(1.0, started + self.duration - now)
            return False
        self.cache.set(key, (started, used + cost), max(1, int(started + self.duration - now) + 1))
        return True

    def wait(self):
        return self.retry_after


class EventsRateThrottle(RecommenderRateThrottle):
    """Limits ``POST /api/events/`` by events: the view charges the batch's size."""

    scope = "events"
    rate_setting = "EVENTS_THROTTLE_RATE"


class RecommendationsRateThrottle(RecommenderRateThrottle):
    """Limits the recommendation endpoints (the visitor's list and "similar products")."""

    scope = "recommendations"
    rate_setting = "RECOMMENDATIONS_THROTTLE_RATE"


class ProfileWriteRateThrottle(RecommenderRateThrottle):
    """Limits changes of the visitor's own data (profile PATCH, erase); reads are not counted."""

    scope = "profile"
    rate_setting = "PROFILE_THROTTLE_RATE"

    def allow_request(self, request, view, cost=1):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return super().allow_request(request, view, cost)
