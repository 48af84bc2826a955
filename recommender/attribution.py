"""Signed attribution of served lists: which placement, strategy and A/B arm showed a product.

Every served list carries a token (``issue``), signed with Django's signing (the project's
``SECRET_KEY``, with ``SECRET_KEY_FALLBACKS`` during a rotation) and stamped with its time. It
names the placement, the strategy and the arm that served the list, the products in it, a
random id of this list, and a digest of the visitor it was served to. The widget's markup and
the API response carry it; the beacon sends it back with each impression and click.

An impression or click from a browser is attributed only through a valid token (``verify``):
signed here, not older than ``ATTRIBUTION_MAX_AGE``, served to the same visitor, and listing
the product. Anything else (no token, a forged or expired one, another visitor's, a product
the list did not hold) is stored as a plain event with no strategy, placement or arm, so a
stranger cannot credit clicks to an arm. The dashboard counts each (served list, product) once
for impressions and once for clicks (see ``reports.click_through``): click-through cannot pass
1 however often a token is replayed. See docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.core import signing

from .conf import settings

SALT = "recommender.attribution"
# Random id of one served list: 12 URL-safe characters (72 bits).
SERVED_ID_BYTES = 9
SERVED_ID_MAX_LENGTH = 16
TOKEN_MAX_LENGTH = 4096
ANONYMOUS = "anonymous"  # serving's identity of a visitor with neither account nor key
# The strategy that impressions and clicks of an exploration slot are attributed to.
EXPLORATION_STRATEGY = "exploration"


@dataclass(frozen=True)
class Attribution:
    """What a valid token says about the list it came with."""

    served_id: str
    placement: str
    strategy: str
    arm: str
    item_ids: tuple[str, ...]
    visitor_digest: str
    # Positions of the list that the exploration slot filled (recommender.serving.exploration).
    explored: tuple[int, ...] = ()

    def covers(self, item_id) -> bool:
        return str(item_id) in self.item_ids

    def slot_of(self, item_id) -> int:
        """The product's position in the served list (0-based)."""
        return self.item_ids.index(str(item_id))


def visitor_digest(identity: str) -> str:
    """A short digest of a visitor's identity: the token names its visitor without showing the key.

    "" for a visitor with no identity yet (a first API call without a session): such a token
    is valid for whoever sends it back. It gives no more than a token of one's own: each
    product of a served list still counts once.
    """
    if not identity or identity == ANONYMOUS:
        return ""
    return hashlib.sha256(f"{SALT}:{identity}".encode()).hexdigest()[:16]


def issue(*, identity: str, placement: str, strategy: str, arm: str, item_ids, explored=()) -> str:
    """A signed, time-stamped token for one served list (compact: a few hundred characters for 8 items).

    ``explored``: the positions the exploration slot filled (their events are attributed to it).
    """
    payload = {"i": secrets.token_urlsafe(SERVED_ID_BYTES), "p": placement, "s": strategy, "a": arm,
               "it": [str(item_id) for item_id in item_ids], "v": visitor_digest(identity)}
    if explored:
        payload["x"] = [int(position) for position in explored]
    return signing.TimestampSigner(salt=SALT).sign_object(payload, compress=True)


def verify(token: str, identities) -> Attribution | None:
    """The token's ``Attribution`` if it is valid for one of ``identities`` (the event's owner), else None.

    ``identities`` are the owner's identity strings (an account's and, beside it, the browser's
    anonymous key, so a list served before signing in still attributes the click after).
    """
    if not token or not isinstance(token, str) or len(token) > TOKEN_MAX_LENGTH:
        return None
    try:
        payload = signing.TimestampSigner(salt=SALT).unsign_object(token, max_age=settings.ATTRIBUTION_MAX_AGE)
    except (signing.BadSignature, ValueError, TypeError):  # SignatureExpired is a BadSignature
        return None
    try:
        attribution = Attribution(served_id=str(payload["i"])[:SERVED_ID_MAX_LENGTH], placement=str(payload["p"]),
                                  strategy=str(payload["s"]), arm=str(payload["a"]),
                                  item_ids=tuple(str(item) for item in payload["it"]), visitor_digest=str(payload["v"]),
                                  explored=tuple(int(position) for position in payload.get("x", ())))
    except (KeyError, TypeError, ValueError):
        return None
    if attribution.visitor_digest and attribution.visitor_digest not in {visitor_digest(identity)
                                                                         for identity in identities}:
        return None
    return attribution
