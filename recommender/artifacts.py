"""Versioned, checksummed model files, stored through Django's storage API.

A version's artifact is one directory, ``<ARTIFACT_PREFIX>/<strategy>/<version id>/``, in the
storage named by ``RECOMMENDER["ARTIFACT_STORAGE"]`` (default storage when None), so web
processes and workers on different machines share it through any backend (a shared disk, S3
via django-storages, ...). The strategy is saved into a local temporary directory, every file is
uploaded, and ``MANIFEST.json`` (sha256 and size of every file) is written LAST: a directory
without a manifest is a half-written artifact. The row records the manifest's own sha256, so
loading verifies the manifest against the database and every file against the manifest.

Loaded artifacts are downloaded into a per-process cache directory keyed by version id and
checksum, and verified again on every load.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path, PurePosixPath

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage, storages
from django.db import transaction

from .conf import settings
from .models import ModelVersion

logger = logging.getLogger(__name__)

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class ArtifactError(RuntimeError):
    """An artifact is missing, incomplete or does not match its checksums; never load it."""


def get_storage():
    """The storage artifacts live in: ``storages[ARTIFACT_STORAGE]`` or the default storage."""
    alias = settings.ARTIFACT_STORAGE
    return storages[alias] if alias else default_storage


def artifact_directory(strategy_key: str, version_id: int) -> str:
    """Storage path of one version's directory (no trailing slash)."""
    return str(PurePosixPath(settings.ARTIFACT_PREFIX.strip("/")) / strategy_key / str(version_id))


def _sha256_of(file_obj) -> str:
    digest = hashlib.sha256()
    while chunk := file_obj.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


# --- writing -----------------------------------------------------------------------------------
def save_artifact(strategy, version: ModelVersion) -> ModelVersion:
    """Save a fitted ``strategy`` as ``version``'s artifact and record path, checksum and size.

    Any earlier upload under the same directory (a retried task) is removed first. The row is
    updated in memory and in the database (``artifact_path``, ``checksum``, ``artifact_bytes``).
    """
    storage = get_storage()
    directory = artifact_directory(version.strategy, version.pk)
    delete_directory(directory)
    # The path is recorded before the upload (so a crash leaves files that prune can find);
    # the checksum only after the manifest, and nothing loads a version without one.
    version.artifact_path, version.checksum, version.artifact_bytes = directory, "", None
    ModelVersion.objects.filter(pk=version.pk).update(artifact_path=directory, checksum="", artifact_bytes=None)
    files = {}
    with tempfile.TemporaryDirectory(prefix="recommender-save-") as local:
        strategy.save(local)
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            relative = path.relative_to(local).as_posix()
            with path.open("rb") as handle:
                files[relative] = {"sha256": _sha256_of(handle), "bytes": path.stat().st_size}
                handle.seek(0)
                replace_file(storage, f"{directory}/{relative}", File(handle))
    manifest = {
        "format": MANIFEST_FORMAT,
        "strategy": version.strategy,
        "version": version.pk,
        "files": files,
        "total_bytes": sum(entry["bytes"] for entry in files.values()),
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    replace_file(storage, f"{directory}/{MANIFEST_NAME}", ContentFile(manifest_bytes))
    version.checksum = hashlib.sha256(manifest_bytes).hexdigest()
    version.artifact_bytes = manifest["total_bytes"]
    ModelVersion.objects.filter(pk=version.pk).update(checksum=version.checksum, artifact_bytes=version.artifact_bytes)
    return version


def replace_file(storage, name: str, content) -> None:
    """Write ``content`` as ``name`` in ``storage``, replacing a file of that name."""
    if storage.exists(name):
        storage.delete(name)
    stored_as = storage.save(name, content)
    # Storages rename on a name clash instead of overwriting; a renamed file would be lost.
    if stored_as != name:
        storage.delete(stored_as)
        raise ArtifactError(f"storage saved {name!r} as {stored_as!r}; another writer is using this directory")


# --- reading -----------------------------------------------------------------------------------
_cache_lock = threading.Lock()
_cache_root: Path | None = None


def local_cache_root() -> Path:
    """This process's download directory (removed when the process exits)."""
    global _cache_root
    with _cache_lock:
        if _cache_root is None or not _cache_root.is_dir():
            _cache_root = Path(tempfile.mkdtemp(prefix="recommender-artifacts-"))
            atexit.register(shutil.rmtree, _cache_root, True)
        return _cache_root


def read_manifest(version: ModelVersion) -> dict:
    """The version's manifest, after checking it against the checksum on the row."""
    if not version.artifact_path or not version.checksum:
        raise ArtifactError(f"{version} has no complete artifact (no manifest checksum recorded)")
    storage = get_storage()
    name = f"{version.artifact_path}/{MANIFEST_NAME}"
    if not storage.exists(name):
        raise ArtifactError(f"{version}: {name} is missing; the artifact was never completed or was deleted")
    with storage.open(name, "rb") as handle:
        manifest_bytes = handle.read()
    if hashlib.sha256(manifest_bytes).hexdigest() != version.checksum:
        raise ArtifactError(f"{version}: {name} does not match the checksum recorded on the version")
    return json.loads(manifest_bytes)


def fetch_artifact(version: ModelVersion) -> Path:
    """Download and verify ``version``'s artifact; return the local directory.

    Raises ``ArtifactError`` when the manifest or any file is missing or differs from its
    checksum. A verified copy already in this process's cache is re-hashed, not re-downloaded.
    """
    manifest = read_manifest(version)
    local = local_cache_root() / f"{version.pk}-{version.checksum[:16]}"
    with _cache_lock:
        if not _verified(local, manifest):
            _download(version, manifest, local)
            if not _verified(local, manifest):
                shutil.rmtree(local, ignore_errors=True)
                raise ArtifactError(f"{version}: a downloaded file does not match its checksum in the manifest")
    return local


def _download(version: ModelVersion, manifest: dict, local: Path) -> None:
    storage = get_storage()
    shutil.rmtree(local, ignore_errors=True)
    for relative in manifest["files"]:
        name = f"{version.artifact_path}/{relative}"
        if not storage.exists(name):
            shutil.rmtree(local, ignore_errors=True)
            raise ArtifactError(f"{version}: {name} is listed in the manifest but missing from storage")
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open(name, "rb") as source, target.open("wb") as destination:
            shutil.copyfileobj(source, destination, _CHUNK)


def _verified(local: Path, manifest: dict) -> bool:
    for relative, entry in manifest["files"].items():
        path = local / relative
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return False
        with path.open("rb") as handle:
            if _sha256_of(handle) != entry["sha256"]:
                return False
    return True


def load_artifact(version: ModelVersion):
    """Return the strategy stored as ``version``, verified (``ArtifactError`` if it is not)."""
    from .strategies.base import Strategy

    return Strategy.load(fetch_artifact(version))


# --- deleting ----------------------------------------------------------------------------------
def delete_directory(directory: str) -> int:
    """Delete every file under a storage directory; return how many were deleted."""
    if not directory.strip("/"):
        raise ValueError("refusing to delete the root of the artifact storage")
    storage = get_storage()
    try:
        subdirectories, files = storage.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    # The manifest goes first: an interrupted delete leaves a directory nothing can load.
    files = sorted(files, key=lambda name: name != MANIFEST_NAME)
    deleted = 0
    for name in files:
        storage.delete(f"{directory}/{name}")
        deleted += 1
    for name in subdirectories:
        deleted += delete_directory(f"{directory}/{name}")
    return deleted


def delete_artifact(version: ModelVersion) -> int:
    """Delete a version's files (manifest first) and clear its artifact fields."""
    deleted = delete_directory(version.artifact_path) if version.artifact_path else 0
    version.artifact_path, version.checksum, version.artifact_bytes = "", "", None
    ModelVersion.objects.filter(pk=version.pk).update(artifact_path="", checksum="", artifact_bytes=None)
    return deleted


def prune(strategy_key: str, keep: int | None = None) -> list[int]:
    """Keep the newest ``keep`` versions with an artifact (the active one always); retire the rest.

    Older ready versions become ``retired`` and lose their files; failed versions lose any
    half-written files. Returns the ids of the versions whose files were deleted.
    """
    keep = settings.KEEP_VERSIONS if keep is None else int(keep)
    Status = ModelVersion.Status
    versions = list(
        ModelVersion.objects.filter(strategy=strategy_key)
        .exclude(status=Status.TRAINING)
        .exclude(artifact_path="")
        .order_by("-created_at", "-pk")
    )
    kept = sum(1 for version in versions if version.status == Status.ACTIVE)
    pruned = []
    for version in versions:
        if version.status == Status.ACTIVE:
            continue
        if version.status == Status.READY and kept < keep:
            kept += 1
            continue
        with transaction.atomic():
            # Re-check under a row lock: a rollback may have just activated this version.
            if not ModelVersion.objects.select_for_update().filter(pk=version.pk, status=version.status).exists():
                continue
            if version.status == Status.READY:
                ModelVersion.objects.filter(pk=version.pk).update(status=Status.RETIRED)
        delete_artifact(version)
        pruned.append(version.pk)
    return pruned
