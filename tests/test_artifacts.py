"""Artifacts: one checksummed directory per version in storage, verified on load, pruned."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from django.core.files.base import ContentFile

from recommender import artifacts
from recommender.versions import guardrail
from recommender.conf import settings
from recommender.serving import loaded_models
from recommender.models import ModelVersion
from recommender.testing.factories import planted_dataset

from .training_support import ToyStrategy, fresh_training_state

Status = ModelVersion.Status


@pytest.fixture(autouse=True)
def fresh_serving_state():
    """No cache entries, loaded models or downloaded copies from an earlier test."""
    shutil.rmtree(artifacts.local_cache_root())
    with fresh_training_state():
        yield


@pytest.fixture
def fitted():
    return ToyStrategy().fit(planted_dataset(n_users=40, n_items=20))


def saved_version(strategy, status=Status.READY):
    version = ModelVersion.objects.create(strategy="toy", status=status)
    return artifacts.save_artifact(strategy, version)


def corrupt(version):
    """Overwrite a file of ``version`` in storage and drop this process's downloaded copies
    (as on a machine that has not loaded it yet)."""
    storage = artifacts.get_storage()
    storage.delete(f"{version.artifact_path}/counts.npy")
    storage.save(f"{version.artifact_path}/counts.npy", ContentFile(b"corrupted"))
    shutil.rmtree(artifacts.local_cache_root())


def test_save_writes_every_file_and_a_manifest_last(db, fitted):
    """The directory holds the strategy's files and a manifest whose sha256 is on the row."""
    version = saved_version(fitted)
    storage = artifacts.get_storage()
    assert version.artifact_path == f"{settings.ARTIFACT_PREFIX}/toy/{version.pk}"
    with storage.open(f"{version.artifact_path}/MANIFEST.json", "rb") as handle:
        manifest_bytes = handle.read()
    assert hashlib.sha256(manifest_bytes).hexdigest() == version.checksum
    manifest = json.loads(manifest_bytes)
    assert set(manifest["files"]) == {"meta.json", "item_ids.npy", "counts.npy"}
    assert manifest["total_bytes"] == version.artifact_bytes == sum(f["bytes"] for f in manifest["files"].values())
    stored = ModelVersion.objects.get(pk=version.pk)
    assert (stored.checksum, stored.artifact_bytes) == (version.checksum, version.artifact_bytes)


def test_load_round_trip_gives_the_same_scores(db, fitted):
    """A loaded artifact scores exactly like the fitted strategy."""
    loaded = artifacts.load_artifact(saved_version(fitted))
    assert isinstance(loaded, ToyStrategy)
    np.testing.assert_array_equal(loaded.counts_, fitted.counts_)
    assert list(loaded.item_ids) == list(fitted.item_ids)


def test_a_corrupted_file_is_detected_and_never_loaded(db, fitted):
    """Changing one byte of a stored file makes loading fail with ArtifactError."""
    version = saved_version(fitted)
    storage = artifacts.get_storage()
    name = f"{version.artifact_path}/counts.npy"
    with storage.open(name, "rb") as handle:
        data = bytearray(handle.read())
    data[-1] ^= 0xFF
    storage.delete(name)
    storage.save(name, ContentFile(bytes(data)))
    with pytest.raises(artifacts.ArtifactError, match="does not match its checksum"):
        artifacts.load_artifact(version)


def test_a_corrupted_cached_copy_is_downloaded_again(db, fitted):
    """A local copy altered after download is re-verified, replaced and loads cleanly."""
    version = saved_version(fitted)
    local = artifacts.fetch_artifact(version)
    (local / "counts.npy").write_bytes(b"garbage")
    loaded = artifacts.load_artifact(version)
    np.testing.assert_array_equal(loaded.counts_, fitted.counts_)


def test_a_tampered_manifest_does_not_match_the_row(db, fitted):
    """A manifest rewritten to match altered files still fails against the row's checksum."""
    version = saved_version(fitted)
    storage = artifacts.get_storage()
    name = f"{version.artifact_path}/MANIFEST.json"
    storage.delete(name)
    storage.save(name, ContentFile(b'{"files": {}}'))
    with pytest.raises(artifacts.ArtifactError, match="does not match the checksum recorded"):
        artifacts.load_artifact(version)


def test_a_half_written_artifact_can_be_neither_loaded_nor_activated(db, fitted):
    """Without a manifest (an upload cut short) the version does not load and is not activated."""
    version = saved_version(fitted)
    artifacts.get_storage().delete(f"{version.artifact_path}/MANIFEST.json")
    with pytest.raises(artifacts.ArtifactError, match="missing"):
        artifacts.load_artifact(version)
    with pytest.raises(artifacts.ArtifactError):
        guardrail.activate(version)
    assert ModelVersion.objects.get(pk=version.pk).status == Status.READY


def test_a_row_without_checksum_is_never_loaded(db):
    """A row whose upload never finished (no checksum recorded) is refused before any download."""
    version = ModelVersion.objects.create(strategy="toy", status=Status.READY, artifact_path="somewhere")
    with pytest.raises(artifacts.ArtifactError, match="no complete artifact"):
        artifacts.fetch_artifact(version)


def test_a_missing_listed_file_is_an_artifact_error(db, fitted):
    """A file listed in the manifest but gone from storage makes loading fail."""
    version = saved_version(fitted)
    artifacts.get_storage().delete(f"{version.artifact_path}/item_ids.npy")
    with pytest.raises(artifacts.ArtifactError, match="missing from storage"):
        artifacts.load_artifact(version)


def test_serving_never_loads_a_corrupted_active_version(transactional_db, fitted):
    """get_active_strategy keeps the last good version when the newly active one is corrupted."""
    good = saved_version(fitted)
    guardrail.activate(good)
    assert loaded_models.get_active_strategy("toy").version_id == good.pk
    newer = saved_version(fitted)
    guardrail.activate(newer)
    corrupt(newer)
    served = loaded_models.get_active_strategy("toy")
    assert served.version_id == good.pk


def test_a_fresh_process_serves_nothing_from_a_corrupted_artifact(transactional_db, fitted):
    """With no good version loaded before, a corrupted active artifact gives None, not a broken model."""
    version = saved_version(fitted)
    guardrail.activate(version)
    corrupt(version)
    loaded_models.forget_loaded_models()
    assert loaded_models.get_active_strategy("toy") is None


def test_prune_keeps_the_newest_versions_and_the_active_one(db, fitted):
    """prune retires ready versions beyond KEEP_VERSIONS and deletes their files; the active stays."""
    active = saved_version(fitted)
    ModelVersion.objects.filter(pk=active.pk).update(status=Status.ACTIVE)
    ready = [saved_version(fitted) for _ in range(3)]
    failed = ModelVersion.objects.create(strategy="toy", status=Status.FAILED)
    failed.artifact_path = artifacts.artifact_directory("toy", failed.pk)
    artifacts.get_storage().save(f"{failed.artifact_path}/partial.npy", ContentFile(b"half"))
    failed.save()
    pruned = artifacts.prune("toy", keep=2)
    assert sorted(pruned) == sorted([ready[0].pk, ready[1].pk, failed.pk])
    statuses = dict(ModelVersion.objects.values_list("pk", "status"))
    assert statuses[active.pk] == Status.ACTIVE and statuses[ready[2].pk] == Status.READY
    assert statuses[ready[0].pk] == statuses[ready[1].pk] == Status.RETIRED
    storage = artifacts.get_storage()
    assert not storage.exists(f"{ready[0].artifact_path}/MANIFEST.json")
    assert not storage.exists(f"{failed.artifact_path}/partial.npy")
    assert storage.exists(f"{active.artifact_path}/MANIFEST.json")


def test_saving_again_replaces_an_earlier_partial_upload(db, fitted):
    """A retried save of the same version removes what the first attempt left behind."""
    version = saved_version(fitted)
    storage = artifacts.get_storage()
    storage.save(f"{version.artifact_path}/leftover.bin", ContentFile(b"x"))
    artifacts.save_artifact(fitted, version)
    assert not storage.exists(f"{version.artifact_path}/leftover.bin")
    assert artifacts.load_artifact(version).fitted


def test_delete_refuses_the_storage_root(db):
    """An empty directory name never deletes the whole storage."""
    with pytest.raises(ValueError, match="root"):
        artifacts.delete_directory("")
