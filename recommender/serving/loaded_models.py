"""The loaded-model registry: each serving process's view of the active versions.

A per-process cache of loaded strategies, revalidated against the activation stamp that every
activation bumps in the Django cache (``versions.guardrail.bump_active_stamp``), so a request costs one
cache read and no database query; the database is read only when the stamp changed (or every
``ACTIVE_VERSION_RECHECK_SECONDS``), an artifact only when the version changed. Training bumps
the stamp, serving reads it; see docs/architecture.md.
"""

from __future__ import annotations

import logging
import threading
import time

from .. import artifacts
from ..conf import settings
from ..models import ModelVersion
from ..strategies.base import Strategy
from ..versions.guardrail import active_versions_stamp, bump_active_stamp

logger = logging.getLogger(__name__)
Status = ModelVersion.Status


class LoadedModels:
    """This process's view of the active versions and the strategies loaded for them."""

    def __init__(self):
        self.lock = threading.RLock()
        self.stamp: str | None = None
        self.checked_at = 0.0
        self.versions: dict[str, tuple[int, str, str]] = {}  # key -> (pk, artifact_path, checksum)
        self.loaded: dict[int, Strategy] = {}
        self.last_good: dict[str, Strategy] = {}
        self.broken: set[int] = set()

    def current_versions(self) -> dict[str, tuple[int, str, str]]:
        try:
            stamp = active_versions_stamp()
        except Exception:
            # The cache (Redis) is down: keep serving the versions already loaded, and read the
            # database only when there are none or the recheck interval has passed.
            logger.warning("Model version stamp unavailable (cache down); serving the loaded versions",
                           exc_info=True)
            stamp = self.stamp
        fresh = time.monotonic() - self.checked_at < settings.ACTIVE_VERSION_RECHECK_SECONDS
        if stamp == self.stamp and fresh:
            return self.versions
        with self.lock:
            rows = ModelVersion.objects.filter(status=Status.ACTIVE).values_list(
                "strategy", "pk", "artifact_path", "checksum"
            )
            versions = {key: (pk, path, checksum) for key, pk, path, checksum in rows}
            if stamp == self.stamp and versions != self.versions:
                try:
                    stamp = bump_active_stamp()  # an activation whose stamp bump was lost
                except Exception:
                    logger.warning("Could not bump the model version stamp (cache down)", exc_info=True)
            live = {pk for pk, _, _ in versions.values()}
            self.loaded = {pk: strategy for pk, strategy in self.loaded.items() if pk in live}
            self.broken &= live
            self.versions, self.stamp, self.checked_at = versions, stamp, time.monotonic()
            return versions

    def strategy(self, key: str) -> Strategy | None:
        entry = self.current_versions().get(key)
        if entry is None:
            return None
        pk, path, checksum = entry
        if pk in self.loaded:
            return self.loaded[pk]
        with self.lock:
            if pk in self.loaded:
                return self.loaded[pk]
            if pk in self.broken:
                return self.last_good.get(key)
            try:
                strategy = artifacts.load_artifact(
                    ModelVersion(pk=pk, strategy=key, artifact_path=path, checksum=checksum)
                )
            except (artifacts.ArtifactError, OSError, ValueError) as exc:
                logger.error("Active %s v%s cannot be loaded (%s); serving the last good version", key, pk, exc)
                self.broken.add(pk)
                _record_load_error(pk, exc)
                return self.last_good.get(key)
            strategy.version_id = pk
            strategy.set_score_cache_size(settings.SCORE_CACHE_MB)
            self.loaded[pk] = self.last_good[key] = strategy
            return strategy


def _record_load_error(version_id: int, exc: BaseException) -> None:
    """Write why serving refused a version on its row (the admin shows it); never raises."""
    try:
        ModelVersion.objects.filter(pk=version_id).update(error=f"Serving refused to load this artifact: {exc}")
    except Exception:
        logger.exception("Could not record the load error of version %s", version_id)


_loaded_models = LoadedModels()


def get_active_strategy(key: str) -> Strategy | None:
    """The loaded strategy of ``key``'s active version, or None if it has none.

    An active artifact that fails verification is never served: the last good version of this
    process is, if it has one. The returned strategy carries ``version_id``.
    """
    return _loaded_models.strategy(key)


def active_version_ids() -> dict[str, int]:
    """{strategy key: active version id}, from this process's cached view."""
    return {key: pk for key, (pk, _, _) in _loaded_models.current_versions().items()}


def forget_loaded_models() -> None:
    """Drop this process's loaded strategies and cached view (tests; after a database reset)."""
    global _loaded_models
    _loaded_models = LoadedModels()


def models_stamp() -> str:
    """A short string that changes whenever an active version changes (for served-list cache keys)."""
    try:
        return str(active_versions_stamp())
    except Exception:
        logger.warning("Could not read the model version stamp (cache down)", exc_info=True)
        return "unknown"
