"""One training run of a strategy: snapshot → held-out check → fit → save → guarded activation.

``train_strategy(key)``:

1. claim the run's row (``records``: refused while another run of ``key`` is alive);
2. snapshot the database into a ``Dataset`` (or use the one given);
3. fit once without a seeded share of the users and score them as brand-new users, revealing
   0 and then 3 events (``evaluation.holdout``): the offline metrics of the version;
4. fit on all data, save the checksummed artifact, mark the row ``ready``;
5. activate it only if the guardrail allows (``guardrail.activate_if_not_worse``).

A strategy built from others (the hybrid) is trained after them and handed their fitted
versions for step 4 (``fit(dataset, components=...)``): those trained by the same in-process
run (``train_here``), else the active version of each component. It serves them instead of
refitting each one; it learns its blend weights only on components it fits itself without its
validation users, so handing it components fitted on every user leaks nothing into the weights.
Step 3 hands it nothing: there, what it serves must not have seen the held-out users.

Any exception marks the row ``failed`` with the error; the active version is never touched
before step 5, and step 5 is one transaction. The params come from the run's ``StrategySpec``
(``specs.resolve``), resolved once here. See docs/training.md.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from django.utils import timezone

from .. import artifacts
from ..conf import settings
from ..data.dataset import Dataset
from ..data.snapshot import build_dataset_from_db
from ..embeddings import shared_embedding_cache
from ..evaluation import holdout
from ..models import ModelVersion
from ..strategies.base import Strategy
from . import guardrail, records, specs
from .records import TRANSIENT_ERRORS, RunAbandoned, TrainingRefused

logger = logging.getLogger(__name__)
Status = ModelVersion.Status

# Params that make the held-out fit cheaper without changing what it measures much: the
# hybrid's second, all-data refit of its components is skipped there (it is done once, for the
# version that is saved).
EVALUATION_OVERRIDES = {"refit": False}


@dataclass(frozen=True)
class FittedVersion:
    """A component's version and its fitted strategy, handed to a composite trained after it."""

    version_id: int
    strategy: Strategy
    same_run: bool = False


class NothingToTrain(ValueError):
    """The shop has no products or no events yet: there is nothing to learn from."""


def check_trainable(dataset: Dataset) -> None:
    """Raise ``NothingToTrain`` with what to do when ``dataset`` cannot train any strategy."""
    counts = dataset.counts()
    if counts["items"] == 0 or counts["interactions"] == 0:
        raise NothingToTrain(
            f"Nothing to train on: the snapshot has {counts['items']} products and "
            f"{counts['interactions']} events. Import data (manage.py recommender_import DIR), "
            "seed the demo (manage.py seed_demo) or wait for visitors' events, then train again."
        )


def train_strategy(
    key: str,
    *,
    version_id: int | None = None,
    progress: Callable[[str, float], None] | None = None,
    task_id: str = "",
    dataset: Dataset | None = None,
    activate_if_better: bool = True,
    components: Mapping[str, FittedVersion] | None = None,
    on_saved: Callable[[Strategy], None] | None = None,
) -> ModelVersion:
    """Train ``key``, evaluate, save and (guardedly) activate; return the row.

    Parameters
    ----------
    key
        Registered strategy key.
    version_id
        A ``training`` row already created by ``records.start_training`` (the jobs entry
        creates it before it queues the task); None creates one.
    progress
        Optional ``callable(stage, fraction)`` called as the run advances.
    task_id
        The Celery task id running this, recorded on the row.
    dataset
        A snapshot to reuse (the command trains several strategies on one); None reads the
        database.
    activate_if_better
        False trains and saves without touching the active version.
    components
        For a composite (the hybrid): fitted component versions to serve instead of refitting
        them (``train_here`` passes those it just trained). None: the active versions.
    on_saved
        Called with the fitted strategy once its artifact is saved.

    Returns
    -------
    ModelVersion
        ``ready`` or ``active`` on success, ``failed`` (with ``error``) when the strategy
        raised. Raises ``TrainingRefused`` when another run of ``key`` is alive, and re-raises
        ``TRANSIENT_ERRORS`` (after marking the row failed when the database allows) so the task
        retries.
    """
    spec = specs.resolve(key)  # an unknown key fails here, before any row
    if version_id:
        version = records.take_over(key, version_id, task_id)
    else:
        version = records.start_training(key, task_id=task_id)
    try:
        with records.RunRecorder(version, progress) as run:
            _run(run, spec, dataset, activate_if_better, components, on_saved)
    except RunAbandoned as exc:
        logger.warning("%s", exc)
    except TRANSIENT_ERRORS as exc:
        records.fail(version, exc)
        raise
    except Exception as exc:
        logger.exception("Training %s v%s failed", key, version.pk)
        records.fail(version, exc)
    except BaseException as exc:  # Ctrl-C, SystemExit, a Celery time limit: fail the row, then stop
        records.fail(version, exc)
        raise
    finally:
        records.release_lock(version)
    version.refresh_from_db()
    return version


def train_here(keys: Iterable[str], dataset: Dataset,
               progress_for: Callable[[str], contextlib.AbstractContextManager] | None = None) -> list[dict]:
    """Train ``keys`` one after another in this process on one snapshot; return their summaries.

    The in-process form of a train-all (``recommender_train --sync``): the order is
    ``specs.trainable_strategy_keys`` (components first, the hybrid last), as in the Celery
    canvas, and the hybrid is handed the components this run activated (the active version of
    the others). ``progress_for(key)`` gives a context manager yielding the run's progress callable.
    """
    check_trainable(dataset)
    summaries, activated = [], {}
    for key in specs.trainable_strategy_keys(keys):
        spec_components = None
        if specs.is_composite(key):
            spec_components = {**active_components(specs.resolve(key), dataset, exclude=activated), **activated}
        with (progress_for(key) if progress_for else contextlib.nullcontext()) as progress:
            try:
                version, strategy = _train(key, dataset=dataset, progress=progress, components=spec_components)
            except TrainingRefused as refused:
                summaries.append(refused_summary(key, refused))
                continue
        if strategy is not None and version.status == Status.ACTIVE:
            activated[key] = FittedVersion(version.pk, strategy, same_run=True)
        summaries.append(run_summary(version))
    return summaries


def _train(key: str, **options) -> tuple[ModelVersion, Strategy | None]:
    """``train_strategy``, also returning the strategy it saved (None when the run failed)."""
    saved = {}
    version = train_strategy(key, on_saved=lambda strategy: saved.setdefault("strategy", strategy), **options)
    return version, saved.get("strategy")


def active_components(spec: specs.StrategySpec, dataset: Dataset, exclude: Iterable[str] = (),
                      same_run: Iterable[int] = ()) -> dict[str, FittedVersion]:
    """The active version of each of ``spec``'s components that can serve on ``dataset``.

    A version fitted on the first products of the dataset's catalogue in its order (an older
    snapshot, before products were added) can; one whose artifact does not verify, or fitted on
    other products, is left out (the composite fits that component itself). ``same_run``: ids of
    the versions the same train-all trained (recorded as such).
    """
    same_run = set(same_run)
    found = {}
    for key in spec.component_keys:
        version = None if key in exclude else guardrail.active_version(key)
        if version is None:
            continue
        try:
            strategy = artifacts.load_artifact(version)
        except artifacts.ArtifactError as exc:
            logger.warning("Not reusing %s v%s in %s: %s", key, version.pk, spec.key, exc)
            continue
        if not _knows_catalogue_prefix(strategy, dataset):
            logger.info("Not reusing %s v%s in %s: fitted on other products", key, version.pk, spec.key)
            continue
        found[key] = FittedVersion(version.pk, strategy, same_run=version.pk in same_run)
    return found


def _knows_catalogue_prefix(strategy: Strategy, dataset: Dataset) -> bool:
    known, items = np.asarray(strategy.item_ids, dtype=object), np.asarray(dataset.item_ids, dtype=object)
    return len(known) <= len(items) and np.array_equal(known, items[:len(known)])


@contextlib.contextmanager
def _run_params(spec: specs.StrategySpec):
    """``spec.params`` completed with this run's resources.

    Strategies that take an ``embedding_cache`` (and the components of a composite that do) get
    the shared embedding cache file, so only new or changed product texts are embedded.
    """
    params = dict(spec.params)
    klass = spec.strategy_class
    component_classes = {key: specs.strategy_class(key) for key in spec.component_keys}
    wants_cache = [c for c in (klass, *component_classes.values()) if "embedding_cache" in c.default_params]
    if not wants_cache:
        yield params
        return
    with shared_embedding_cache(params.get("text_model")) as cache_path:
        if "embedding_cache" in klass.default_params and not params.get("embedding_cache"):
            params["embedding_cache"] = str(cache_path)
        if component_classes:
            params["component_params"] = {
                component: {**({"embedding_cache": str(cache_path)}
                                if "embedding_cache" in component_classes[component].default_params else {}),
                            **component_params}
                for component, component_params in params["component_params"].items()
            }
        yield params


def _run(run: records.RunRecorder, spec: specs.StrategySpec, dataset: Dataset | None, activate_if_better: bool,
         components: Mapping[str, FittedVersion] | None, on_saved: Callable[[Strategy], None] | None) -> None:
    with _run_params(spec) as params:
        strategy = _train_and_save(run, spec, params, dataset, components)
    if on_saved is not None:
        on_saved(strategy)
    if activate_if_better:
        guardrail.activate_if_not_worse(run.version)
    artifacts.prune(spec.key)
    if run.progress is not None:
        run.progress("done", 1.0)


def _train_and_save(run: records.RunRecorder, spec: specs.StrategySpec, params: dict, dataset: Dataset | None,
                    components: Mapping[str, FittedVersion] | None) -> Strategy:
    run.stage("snapshot", 0.0)
    started = time.monotonic()
    if dataset is None:
        dataset = build_dataset_from_db(progress=lambda fraction: run.stage("snapshot", 0.15 * fraction))
    run.timed("snapshot", time.monotonic() - started)
    run.write(data_counts=dict(dataset.meta.get("counts") or dataset.counts()), params=params)
    check_trainable(dataset)

    run.stage("evaluate", 0.15)
    started = time.monotonic()
    refit = settings.TRAINING_REFIT_ON_ALL_DATA
    klass = spec.strategy_class
    evaluation_params = {**params, **{name: value for name, value in EVALUATION_OVERRIDES.items()
                                      if refit and name in klass.default_params}}
    split = holdout.holdout_split(dataset, specs.holdout_plan())
    evaluated = None
    if split is None:
        metrics = holdout.no_holdout_metrics()
    else:
        evaluated = klass(**evaluation_params).fit(split.train)
        run.stage("evaluate", 0.4)
        metrics = holdout.evaluate(evaluated, split)
    run.timed("evaluate", time.monotonic() - started)

    if refit or evaluated is None:
        run.stage("fit", 0.5)
        started = time.monotonic()
        if spec.is_composite:
            given = dict(components) if components is not None else active_components(
                spec, dataset, same_run=run.timings.get("waiting_for") or ())
            strategy = klass(**params).fit(dataset, components={key: fitted.strategy for key, fitted in given.items()})
            metrics["components_given"] = _components_record(given)
        else:
            strategy = klass(**params).fit(dataset)
        run.timed("fit", time.monotonic() - started)
        metrics["fitted_on"] = "all data"
    else:
        strategy = evaluated
        metrics["fitted_on"] = "all data but the held-out users (TRAINING_REFIT_ON_ALL_DATA is off)"

    run.stage("save", 0.85)
    started = time.monotonic()
    artifacts.save_artifact(strategy, run.version)
    run.timed("save", time.monotonic() - started)
    run.timed("total", time.monotonic() - run.started)
    run.write(
        status=Status.READY, stage="done", progress=1.0, metrics=metrics,
        params=_jsonable(strategy.params), finished_at=timezone.now(),
    )
    return strategy


def _components_record(given: Mapping[str, FittedVersion]) -> dict:
    """{component: {"version": id, "same_run": bool}} of the fitted versions handed to a composite."""
    return {key: {"version": fitted.version_id, "same_run": fitted.same_run} for key, fitted in given.items()}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- what a task returns and the command prints ----------------------------------------------------
def run_summary(version: ModelVersion) -> dict:
    """What a task returns and the command prints about one run."""
    guardrail_decision = (version.metrics or {}).get("guardrail", {})
    if version.status == Status.FAILED:
        outcome = f"failed: {version.error.splitlines()[0] if version.error else 'unknown error'}"
    elif guardrail_decision:
        outcome = "activated" if guardrail_decision.get("activated") else f"not activated: {guardrail_decision.get('reason')}"
    else:
        outcome = version.status
    return {
        "strategy": version.strategy,
        "version": version.pk,
        "status": version.status,
        "seconds": (version.timings or {}).get("total_seconds"),
        "key_value": (version.metrics or {}).get("key_value"),
        "activated": bool(guardrail_decision.get("activated")) and version.status == Status.ACTIVE,
        "outcome": outcome,
    }


def refused_summary(key: str, refused: TrainingRefused, version_id: int | None = None) -> dict:
    """The summary of a run that was refused (another run of ``key`` is alive)."""
    return {"strategy": key, "version": version_id, "status": "refused", "outcome": f"refused: {refused}"}
