"""Step 1 of the request path: whose recommendations these are (see docs/architecture.md).

A ``Visitor`` is an account, an anonymous visitor's key (kept in the session), or nobody yet.
It is resolved once per request (``visitor_from`` keeps it on the request, so the template tags
and the API never resolve it twice) and reads its profile at most once. The A/B arm is the
visitor's too: sticky, a hash of their identity and the test's name.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..conf import settings
from ..events import visitor_key_for
from ..models import EventType, Interaction, UserProfile

# Attribute of the request that holds its resolved visitor.
REQUEST_ATTRIBUTE = "_recommender_visitor"
_NOT_READ = object()


class Visitor:
    """Whose recommendations these are: an account, an anonymous visitor's key, or nobody yet."""

    def __init__(self, user: Any = None, visitor_key: str = ""):
        self.user = user
        self.visitor_key = visitor_key or ""
        self._profile = _NOT_READ
        # What serving.context read of this visitor's events, per builder: read once per request.
        self.known_events_read: dict = {}

    def __repr__(self):
        return f"<Visitor {self.identity}>"

    def __eq__(self, other):
        return isinstance(other, Visitor) and (self.user, self.visitor_key) == (other.user, other.visitor_key)

    def __hash__(self):
        return hash(self.identity)

    @property
    def identity(self) -> str:
        if self.user is not None:
            return f"user:{self.user.pk}"
        if self.visitor_key:
            return f"visitor:{self.visitor_key}"
        return "anonymous"

    @property
    def known(self) -> bool:
        return self.user is not None or bool(self.visitor_key)

    def interactions(self):
        """This visitor's rows of the event log (an account's, else the anonymous key's)."""
        if self.user is not None:
            return Interaction.objects.filter(user=self.user)
        # The condition of the partial visitor indexes, repeated so that SQLite uses them.
        return Interaction.objects.filter(visitor_key=self.visitor_key).exclude(visitor_key="")

    def profile(self) -> UserProfile | None:
        """The visitor's profile, or None; read from the database once per ``Visitor``."""
        if self._profile is _NOT_READ:
            if self.user is not None:
                self._profile = UserProfile.objects.filter(user=self.user).first()
            elif self.visitor_key:
                self._profile = UserProfile.objects.filter(visitor_key=self.visitor_key).first()
            else:
                self._profile = None
        return self._profile

    @property
    def consent(self) -> bool:
        """Whether the visitor allows personalisation (no profile yet: the default, allowed)."""
        profile = self.profile()
        return profile is None or profile.personalization_consent

    @property
    def profile_version(self) -> str:
        """Changes whenever the profile is saved (a served-list cache key part)."""
        return profile_version(self.profile())

    @property
    def arm(self) -> str:
        """The visitor's arm of ``AB_TEST`` ("" without a test, or without consent)."""
        return assign_arm(self.identity) if self.consent else ""

    def has_events(self) -> bool:
        """Whether the visitor has done anything that counts as context (one query)."""
        return self.known and self.interactions().exclude(event=EventType.IMPRESSION).exists()


def profile_version(profile: UserProfile | None) -> str:
    """A string that changes whenever ``profile`` is saved (``updated_at``), "none" without one."""
    if profile is None:
        return "none"
    return f"{profile.pk}:{profile.updated_at.timestamp() if profile.updated_at else ''}"


def visitor_from(user=None, visitor_key="", request=None, create=True) -> Visitor:
    """Resolve the visitor from explicit arguments or a request (an anonymous request gets a key).

    With a request and no explicit visitor, the result is kept on the request: the second call
    (another widget, the API view then the service) reuses it, its profile included.
    """
    if request is not None and user is None and not visitor_key:
        visitor = getattr(request, REQUEST_ATTRIBUTE, None)
        if visitor is None or not _still_current(visitor, request) or (create and not visitor.known):
            visitor = _from_request(request, create)
            try:
                setattr(request, REQUEST_ATTRIBUTE, visitor)
            except AttributeError:  # a request object that takes no attributes: resolve every time
                pass
        return visitor
    if user is not None and not user.is_authenticated:
        user = None
    return Visitor(user=user, visitor_key=visitor_key or "")


def _signed_in_user(request):
    request_user = getattr(request, "user", None)
    return request_user if request_user is not None and request_user.is_authenticated else None


def _still_current(visitor: Visitor, request) -> bool:
    """Whether a visitor kept on the request is still the request's (no login, no new key since)."""
    if visitor.user is not None or _signed_in_user(request) is not None:
        return visitor.user == _signed_in_user(request)
    return not hasattr(request, "session") or visitor.visitor_key == visitor_key_for(request, create=False)


def _from_request(request, create: bool) -> Visitor:
    request_user = _signed_in_user(request)
    if request_user is not None:
        return Visitor(user=request_user)
    if hasattr(request, "session"):
        return Visitor(visitor_key=visitor_key_for(request, create=create) or "")
    return Visitor()


def assign_arm(identity: str) -> str:
    """The arm of ``AB_TEST`` for ``identity`` ("" without a test): sticky, a hash of id and test name."""
    test = settings.AB_TEST
    if not test or not test.get("arms"):
        return ""
    arms = sorted(test["arms"].items())
    total = sum(float(weight) for _, weight in arms)
    digest = hashlib.sha256(f"{test.get('name', '')}:{identity}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64 * total
    cumulative = 0.0
    for arm, weight in arms:
        cumulative += float(weight)
        if position < cumulative:
            return arm
    return arms[-1][0]
