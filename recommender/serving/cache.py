"""Step 6 of the request path: the served-list cache (see docs/architecture.md).

A served list is cached under a key of everything it depends on: who (the visitor, or
"no-consent"), their profile's version (a change through ``PATCH /api/profile/`` or the account
page shows on the next page), the placement, the product in view, ``k``, the strategy chain
(a forced strategy or the A/B arm included), the active model versions' stamp and the
visitor's newest event (a new click shows on the next page). ``CACHE_TIMEOUT`` bounds how long
a list and its product rows (stock, price) may be reused. A cache outage degrades to computing
every time; it never takes a page down.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from django.core.cache import caches

from ..conf import settings
from .visitor import Visitor

logger = logging.getLogger(__name__)
PREFIX = "recommender:"


def key_of(*parts) -> str:
    """A cache key from ``parts`` (hashed: any length, any characters)."""
    raw = ":".join("" if part is None else str(part) for part in parts)
    return PREFIX + hashlib.sha1(raw.encode()).hexdigest()


def served_list_key(visitor: Visitor, placement: str, product_id: str | None, k: int, chain: Sequence[str],
                    models_stamp: str, event_stamp: str, excluded: Sequence[str] = ()) -> str:
    """The key of one served list (see the module docstring for what it holds)."""
    who = (visitor.identity, visitor.profile_version) if visitor.consent else ("no-consent", "")
    return key_of("served", *who, placement, product_id, k, ",".join(chain), models_stamp, event_stamp,
                  ",".join(excluded))


def get(key: str):
    try:
        return caches[settings.CACHE_ALIAS].get(key)
    except Exception:
        logger.warning("Recommendation cache unavailable (get)", exc_info=True)
        return None


def put(key: str, value, timeout: float | None = None) -> None:
    try:
        caches[settings.CACHE_ALIAS].set(key, value, settings.CACHE_TIMEOUT if timeout is None else timeout)
    except Exception:
        logger.warning("Recommendation cache unavailable (set)", exc_info=True)
