"""Rate limits of the endpoints every page calls: event ingestion and recommendations.

Rates come from ``RECOMMENDER["EVENTS_THROTTLE_RATE"]`` and
``RECOMMENDER["RECOMMENDATIONS_THROTTLE_RATE"]`` (``"<n>/<second|minute|hour|day>"``, or None for
no limit), not from DRF's ``DEFAULT_THROTTLE_RATES``, so a host configures the app in one place.
A signed-in user is counted by account, anyone else by client address. The counters live in the
app's cache (``CACHE_ALIAS``); when that cache is down the request is let through: a broken cache
must not take the shop's pages down with it.
"""

import logging

from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from ..conf import settings

logger = logging.getLogger(__name__)


class RecommenderRateThrottle(SimpleRateThrottle):
    """Counts requests per user (or per address when anonymous) against a ``RECOMMENDER`` rate."""

    rate_setting = None  # name of the RECOMMENDER key holding the rate

    def __init__(self):
        # The rate is read per request (not at import), so override_settings applies.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    @property
    def cache(self):
        return caches[settings.CACHE_ALIAS]

    def get_rate(self):
        """The configured rate string, or None for no limit."""
        return getattr(settings, self.rate_setting)

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        ident = f"user-{user.pk}" if user is not None and user.is_authenticated else self.get_ident(request)
        return f"recommender:throttle:{self.scope}:{ident}"

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)
            return True


class EventsRateThrottle(RecommenderRateThrottle):
    """Limits ``POST /api/events/`` (batches, not events: a batch counts once)."""

    scope = "events"
    rate_setting = "EVENTS_THROTTLE_RATE"


class RecommendationsRateThrottle(RecommenderRateThrottle):
    """Limits the recommendation endpoints (the visitor's list and "similar products")."""

    scope = "recommendations"
    rate_setting = "RECOMMENDATIONS_THROTTLE_RATE"
