"""Export and erase one person's data: their profile, ratings and events.

A person is a signed-in user or an anonymous visitor (the stable key kept in their session).
Both calls take the same owner arguments, and neither touches the account itself, which
belongs to the shop. Erasing is one transaction: everything goes, or nothing does.

Trained model artifacts hold internal ids only (``str(user.pk)``, product pks), never names or
e-mail addresses. An erase does not rewrite the artifacts: they keep loading and serving, the
erased person is served like a new visitor (there is no profile and no event of theirs left to
build a context from), and their interactions leave the models with the next retrain.
"""

from django.db import transaction

from .models import Interaction, Rating, UserProfile

EXPORT_FORMAT = 1
PROFILE_FIELDS = ("birth_year", "gender", "country", "region", "city", "language", "attributes",
                  "personalization_consent", "created_at", "updated_at")
EVENT_FIELDS = ("product_id", "event", "value", "dwell_seconds", "placement", "strategy", "arm", "context",
                "timestamp")


def _owned(user, visitor_key):
    """(profiles, ratings, events) querysets of one owner."""
    if user is not None and getattr(user, "is_authenticated", False):
        # Anonymous events from the browsers this user signed in from (left unmerged, e.g. by an
        # import) are theirs too.
        keys = set(Interaction.objects.filter(user=user).exclude(visitor_key="")
                   .values_list("visitor_key", flat=True).distinct())
        return (UserProfile.objects.filter(user=user), Rating.objects.filter(user=user),
                Interaction.objects.filter(user=user) | Interaction.objects.filter(user__isnull=True,
                                                                                   visitor_key__in=keys))
    if not visitor_key:
        raise ValueError("privacy: needs a signed-in user or an anonymous visitor's key")
    return (UserProfile.objects.filter(user__isnull=True, visitor_key=visitor_key), Rating.objects.none(),
            Interaction.objects.filter(user__isnull=True, visitor_key=visitor_key))


def export_user_data(user=None, visitor_key="") -> dict:
    """Everything the app stores about one person, as JSON-ready data.

    ``{"format", "user": {"id", "username"} | None, "visitor_key", "profile": {...} | None,
    "ratings": [{"product_id", "score", ...}], "events": [{...}, oldest first]}``.
    """
    profiles, ratings, events = _owned(user, visitor_key)
    profile = profiles.values(*PROFILE_FIELDS).first()
    return {
        "format": EXPORT_FORMAT,
        "user": None if user is None or not user.is_authenticated else {"id": user.pk,
                                                                        "username": user.get_username()},
        "visitor_key": visitor_key or "",
        "profile": _jsonable(profile) if profile else None,
        "ratings": [_jsonable(row) for row in ratings.order_by("created_at", "pk").values(
            "product_id", "score", "created_at", "updated_at")],
        "events": [_jsonable(row) for row in events.order_by("timestamp", "pk").values(*EVENT_FIELDS)],
    }


def _jsonable(row: dict) -> dict:
    """Dates as ISO 8601 and product ids as strings (UUID keys are not JSON)."""
    return {name: value.isoformat() if hasattr(value, "isoformat") else
            str(value) if name == "product_id" else value for name, value in row.items()}


def erase_user_data(user=None, visitor_key="") -> dict:
    """Delete one person's profile, ratings and events in one transaction; return the counts."""
    profiles, ratings, events = _owned(user, visitor_key)
    with transaction.atomic():
        counts = {"events": events.delete()[0], "ratings": ratings.delete()[0],
                  "profiles": profiles.delete()[0]}
    return counts
