"""The guardrail: whether a trained version may serve, and every change of the serving version.

``activation_verdict`` compares a version's key metric (from the held-out check,
``recommender.evaluation.holdout``) with the active version's; ``activate`` switches the active
version in one transaction after verifying the artifact; ``rollback`` is a person's decision and
skips the metric; ``retire`` deletes a version's files for good. Every activation bumps the
activation stamp in the Django cache after the commit; serving processes revalidate their loaded
strategies against it (``recommender.serving.loaded_models``), so a request costs one cache read
and no database query. See docs/architecture.md, "The training layer".
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
from django.db import transaction
from django.utils import timezone

from .. import artifacts
from ..conf import settings
from ..evaluation.holdout import KEY_K, KEY_METRIC
from ..models import ModelVersion
from .records import cache, lock_strategy_rows

logger = logging.getLogger(__name__)
Status = ModelVersion.Status

STAMP_KEY = "recommender:active-versions-stamp"


class ActivationError(RuntimeError):
    """The version cannot be activated (wrong status, no artifact, nothing to roll back to)."""


def active_version(key: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(strategy=key, status=Status.ACTIVE).first()


# --- the verdict ---------------------------------------------------------------------------------
def activation_verdict(version: ModelVersion, tolerance: float | None = None) -> tuple[bool, str]:
    """Whether ``version`` may replace the active version of its strategy, and why.

    ``tolerance``: how much worse (relative) the key metric may be; default
    ``ACTIVATION_TOLERANCE``.
    """
    tolerance = float(settings.ACTIVATION_TOLERANCE if tolerance is None else tolerance)
    current = ModelVersion.objects.filter(strategy=version.strategy, status=Status.ACTIVE).exclude(pk=version.pk).first()
    new_value = _metric(version)
    if current is None:
        return True, "first active version"
    old_value = _metric(current)
    if old_value is None:
        return True, f"active v{current.pk} has no key metric to compare with"
    if new_value is None:
        return False, f"not evaluated (no held-out new user with a relevant event); active v{current.pk} kept"
    floor = old_value * (1.0 - tolerance)
    comparison = f"{KEY_METRIC}@{KEY_K} {new_value:.4f} vs active v{current.pk} {old_value:.4f}"
    if new_value < floor:
        return False, f"{comparison}: worse by more than {tolerance:.0%}"
    return True, comparison


def _metric(version: ModelVersion) -> float | None:
    value = (version.metrics or {}).get("key_value")
    return None if value is None or not np.isfinite(value) else float(value)


def activate_if_not_worse(version: ModelVersion) -> bool:
    """Activate ``version`` if the guardrail allows; record the decision in its metrics."""
    tolerance = float(settings.ACTIVATION_TOLERANCE)
    allowed, reason = activation_verdict(version, tolerance)
    if allowed:
        try:
            activate(version)
        except (ActivationError, artifacts.ArtifactError) as exc:
            allowed, reason = False, f"activation refused: {exc}"
    metrics = {**(version.metrics or {}), "guardrail": {"activated": allowed, "reason": reason, "tolerance": tolerance}}
    ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
    version.metrics = metrics
    logger.info("%s: %s (%s)", version, "activated" if allowed else "not activated", reason)
    return allowed


# --- switching the active version ----------------------------------------------------------------
def activate(version: ModelVersion) -> ModelVersion:
    """Make ``version`` the active one of its strategy, in one transaction; return it.

    The artifact is downloaded and verified first: a half-written or corrupted artifact is never
    activated (``ArtifactError``). The previous active version becomes ``ready`` (a rollback
    target). The cache stamp is bumped after the commit so serving processes reload.
    """
    artifacts.fetch_artifact(version)
    with transaction.atomic():
        lock_strategy_rows(version.strategy)
        locked = ModelVersion.objects.select_for_update().filter(pk=version.pk).first()
        if locked is None or locked.status not in (Status.READY, Status.ACTIVE):
            status = locked.status if locked else "deleted"
            raise ActivationError(f"{version} is {status}; only a ready version can be activated")
        if locked.checksum != version.checksum or not locked.checksum:
            raise ActivationError(f"{version}: the artifact changed since it was verified")
        if locked.status == Status.ACTIVE:
            return locked
        previous = list(
            ModelVersion.objects.select_for_update().filter(strategy=version.strategy, status=Status.ACTIVE)
        )
        ModelVersion.objects.filter(pk__in=[row.pk for row in previous]).update(status=Status.READY)
        now = timezone.now()
        ModelVersion.objects.filter(pk=version.pk).update(status=Status.ACTIVE, activated_at=now)
        transaction.on_commit(bump_active_stamp)
    version.status, version.activated_at = Status.ACTIVE, now
    return version


def rollback(strategy_key: str, to_version_id: int | None = None) -> ModelVersion:
    """Activate an earlier version of ``strategy_key`` (by default the last one active before).

    Skips the metric guardrail: a rollback is a human decision. Raises ``ActivationError`` when
    there is nothing to roll back to.
    """
    candidates = ModelVersion.objects.filter(strategy=strategy_key, status=Status.READY).exclude(checksum="")
    if to_version_id is not None:
        target = candidates.filter(pk=to_version_id).first()
        if target is None:
            raise ActivationError(
                f"version {to_version_id} of {strategy_key} is not a ready version with an artifact; "
                f"ready versions: {list(candidates.values_list('pk', flat=True))}"
            )
    else:
        target = candidates.filter(activated_at__isnull=False).order_by("-activated_at").first()
        if target is None:
            raise ActivationError(f"{strategy_key} has no earlier active version to roll back to")
    return activate(target)


def activate_version(version_id: int) -> ModelVersion:
    """Activate the ready version ``version_id`` (the admin's action: a rollback to it)."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise ActivationError(f"version {version_id} does not exist")
    return rollback(version.strategy, to_version_id=version.pk)


def retire(version_id: int) -> ModelVersion:
    """Retire a ready or failed version for good: mark it ``retired`` and delete its files.

    The active version is refused (activate or roll back to another one first), and so is a
    running training. Retiring an already retired version does nothing (safe to run twice).
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None:
            raise ActivationError(f"version {version_id} does not exist")
        if version.status in (Status.ACTIVE, Status.TRAINING):
            raise ActivationError(
                f"{version} is {version.status}: "
                + ("activate another version or roll back first" if version.status == Status.ACTIVE
                   else "wait until it finishes")
            )
        ModelVersion.objects.filter(pk=version.pk).update(status=Status.RETIRED)
        version.status = Status.RETIRED
    if version.artifact_path:
        artifacts.delete_artifact(version)
    return version


# --- the activation stamp (serving's loaded-model registry reads it) -----------------------------
def bump_active_stamp() -> str:
    """Tell every serving process that the active versions changed."""
    stamp = uuid.uuid4().hex
    cache().set(STAMP_KEY, stamp, timeout=None)
    return stamp


def active_versions_stamp() -> str:
    """A string that changes on every activation (for cache keys of served recommendations)."""
    stamp = cache().get(STAMP_KEY)
    if stamp is None:
        cache().add(STAMP_KEY, uuid.uuid4().hex, timeout=None)
        stamp = cache().get(STAMP_KEY) or "unknown"
    return stamp
