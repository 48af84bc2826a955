"""Data model: profiles, explicit ratings, the event log and trained model versions.

The product model is the host's, named by ``settings.RECOMMENDER_PRODUCT_MODEL``.
"""

import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

PRODUCT_MODEL = getattr(settings, "RECOMMENDER_PRODUCT_MODEL", "catalog.Product")


class Gender(models.TextChoices):
    UNKNOWN = "", _("Prefer not to say")
    FEMALE = "f", _("Female")
    MALE = "m", _("Male")
    OTHER = "x", _("Other")


class UserProfile(models.Model):
    """What a shop knows about a visitor: demographics and consent.

    One per account, or one per anonymous visitor (``visitor_key``, kept in the session) until
    the visitor signs up or logs in and the profile is merged into the account's.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="recommender_profile",
    )
    visitor_key = models.CharField(max_length=64, null=True, blank=True, unique=True)
    birth_year = models.PositiveSmallIntegerField(null=True, blank=True)
    gender = models.CharField(max_length=1, choices=Gender.choices, blank=True, default="")
    country = models.CharField(max_length=64, blank=True, default="")
    region = models.CharField(max_length=64, blank=True, default="")
    city = models.CharField(max_length=64, blank=True, default="")
    language = models.CharField(max_length=16, blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    personalization_consent = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False) | Q(visitor_key__isnull=False),
                name="recommender_profile_has_owner",
            )
        ]

    def __str__(self):
        return f"profile of {self.user or self.visitor_key}"

    @property
    def age(self):
        if self.birth_year is None:
            return None
        return datetime.date.today().year - self.birth_year

    def as_features(self):
        """Return the profile as the flat attribute dict strategies read."""
        features = dict(self.attributes or {})
        features.update(
            age=self.age,
            gender=self.gender or None,
            country=self.country or None,
            region=self.region or None,
            city=self.city or None,
            language=self.language or None,
        )
        return {key: value for key, value in features.items() if value not in (None, "")}


class Rating(models.Model):
    """An explicit score a signed-in user gave a product; one per pair, upserted."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recommender_ratings"
    )
    product = models.ForeignKey(PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # When the user gave this score (the rating event's own time, not when it was written):
    # a score only replaces an older one, whatever order the events arrive in.
    rated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "product"], name="recommender_rating_unique_pair")
        ]

    def __str__(self):
        return f"{self.user} rated {self.product_id}: {self.score:g}"


class EventType(models.TextChoices):
    IMPRESSION = "impression", _("Impression")
    VIEW = "view", _("View")
    CLICK = "click", _("Click")
    CART = "cart", _("Added to cart")
    PURCHASE = "purchase", _("Purchase")
    RATING = "rating", _("Rating")


class Interaction(models.Model):
    """One behavioural event, append-only.

    Belongs to an account (``user``) or, before sign-up, to an anonymous visitor
    (``visitor_key``). ``dedupe_key`` makes a retried batch or a second import add nothing.
    Every query the request path makes on it uses one of the indexes below (tests/test_queries.py
    reads the query plans on SQLite and PostgreSQL).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="recommender_interactions",
    )
    visitor_key = models.CharField(max_length=64, blank=True, default="")
    product = models.ForeignKey(PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=16, choices=EventType.choices)
    value = models.FloatField(null=True, blank=True)
    dwell_seconds = models.FloatField(null=True, blank=True)
    placement = models.CharField(max_length=64, blank=True, default="")
    strategy = models.CharField(max_length=64, blank=True, default="")
    arm = models.CharField(max_length=64, blank=True, default="")
    # The random id of the served list an impression or click was attributed to through its
    # signed token ("" when not attributed); see recommender.attribution.
    served_list = models.CharField(max_length=16, blank=True, default="")
    context = models.JSONField(default=dict, blank=True)
    timestamp = models.DateTimeField(default=timezone.now)
    dedupe_key = models.CharField(max_length=128, null=True, blank=True, unique=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-timestamp"], name="rec_inter_user_time"),
            models.Index(fields=["visitor_key", "-timestamp"], name="rec_inter_visitor_time"),
            models.Index(fields=["timestamp"], name="rec_inter_time"),
            models.Index(fields=["event", "timestamp"], name="rec_inter_event_time"),
            # The request path's (recommender/serving/): an anonymous visitor's newest events, and
            # "did this visitor buy this product?" for each candidate of a shelf. Partial: rows of
            # accounts have visitor_key "" (anonymous rows no user), so these indexes hold only rows
            # they can answer, and SQLite's statistics (ANALYZE) cannot mistake the one value ""
            # for the typical visitor and scan the time index instead. The visitor queries repeat
            # the condition (``Visitor.interactions``) so that SQLite may use them.
            models.Index(fields=["visitor_key", "-timestamp"], condition=~Q(visitor_key=""),
                         name="rec_inter_visitor_recent"),
            models.Index(fields=["user", "event", "product"], condition=Q(user__isnull=False),
                         name="rec_inter_user_bought"),
            models.Index(fields=["visitor_key", "event", "product"], condition=~Q(visitor_key=""),
                         name="rec_inter_visitor_bought"),
        ]

    def __str__(self):
        return f"{self.event} {self.product_id} by {self.user_id or self.visitor_key}"


class ModelVersion(models.Model):
    """One trained artifact of one strategy, and what happened to it."""

    class Status(models.TextChoices):
        TRAINING = "training", _("Training")
        READY = "ready", _("Ready")
        ACTIVE = "active", _("Active")
        FAILED = "failed", _("Failed")
        RETIRED = "retired", _("Retired")

    strategy = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    stage = models.CharField(max_length=64, blank=True, default="")
    progress = models.FloatField(default=0.0)
    artifact_path = models.CharField(max_length=512, blank=True, default="")
    checksum = models.CharField(max_length=128, blank=True, default="")
    artifact_bytes = models.BigIntegerField(null=True, blank=True)
    data_counts = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    task_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["strategy"],
                condition=Q(status="active"),
                name="recommender_one_active_version_per_strategy",
            )
        ]

    def __str__(self):
        return f"{self.strategy} v{self.pk} ({self.status})"


class EvaluationRun(models.Model):
    """One offline evaluation of a few strategies on the shop's own data, started from the admin."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    data_counts = models.JSONField(default=dict, blank=True)
    results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    task_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"evaluation run {self.pk} ({self.status})"


# Entries of the admin's app index for the dashboard and the preview pages (no tables of their
# own): a proxy's changelist URL is admin/recommender/<name>/, and permissions come for free.
class Dashboard(ModelVersion):
    class Meta:
        proxy = True
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")


class Preview(ModelVersion):
    class Meta:
        proxy = True
        verbose_name = _("recommendation preview")
        verbose_name_plural = _("recommendation preview")


class NewArrivals(ModelVersion):
    class Meta:
        proxy = True
        verbose_name = _("new arrivals")
        verbose_name_plural = _("new arrivals")
