"""Helpers of the training tests: tiny strategies with controllable quality, and a small shop
written into the database through the catalog adapter (so the tests run on any host catalog)."""

import datetime
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from recommender.models import Interaction, UserProfile
from recommender.serving import loaded_models
from recommender.strategies.base import Strategy
from recommender.testing.factories import make_product
from recommender.versions import guardrail, records

TOY_PATH = "tests.training_support.ToyStrategy"
TOY_BLEND_PATH = "tests.training_support.ToyBlend"
FAILING_PATH = "tests.training_support.FailingStrategy"
BLOCKING_PATH = "tests.training_support.BlockingStrategy"
CATEGORIES = ("Garden", "Kitchen")


class ToyStrategy(Strategy):
    """Event-weighted popularity; ``reverse=True`` ranks the least popular first (a worse model)."""

    key = "toy"
    label = "Toy"
    default_params = {"reverse": False}

    def _fit(self, dataset):
        counts = np.bincount(dataset.item_codes, weights=dataset.event_weights(), minlength=dataset.n_items)
        self.counts_ = (-counts if self.params["reverse"] else counts).astype(np.float32)

    def _score_batch(self, contexts):
        return np.tile(self.counts_, (len(contexts), 1))

    def _save_state(self, directory):
        np.save(Path(directory) / "counts.npy", self.counts_)

    def _load_state(self, directory):
        self.counts_ = np.load(Path(directory) / "counts.npy")


class ToyBlend(Strategy):
    """A composite like the hybrid: averages its components, serving fitted ones it is given.

    ``fits_`` counts the components it fitted itself (a class-wide tally, for the tests).
    """

    key = "toy_blend"
    label = "Toy blend"
    default_params = {"components": ["toy", "toy2"], "component_params": {}}
    fits_: list = []

    def _fit(self, dataset, components=None):
        given = dict(components or {})
        self.given_ = sorted(given)
        self.components_ = {}
        for key in self.params["components"]:
            if key in given:
                self.components_[key] = given[key]
            else:
                ToyBlend.fits_.append(key)
                self.components_[key] = ToyStrategy(**self.params["component_params"].get(key, {})).fit(dataset)

    def _score_batch(self, contexts):
        return np.mean([component.score_batch(contexts) for component in self.components_.values()], axis=0)

    def _save_state(self, directory):
        for key, component in self.components_.items():
            component.save(Path(directory) / "components" / key)

    def _load_state(self, directory):
        self.components_ = {key: Strategy.load(Path(directory) / "components" / key) for key in self.params["components"]}


class FailingStrategy(ToyStrategy):
    """A strategy whose training always raises."""

    def _fit(self, dataset):
        raise ValueError("planted failure in _fit")


class BlockingStrategy(ToyStrategy):
    """Announces its fit in the file named by ``$TRAINING_TEST_MARKER``, then keeps fitting.

    The worker test kills the worker while it is stuck here.
    """

    def _fit(self, dataset):
        marker = os.environ.get("TRAINING_TEST_MARKER")
        if marker:
            Path(marker).write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.1)
        super()._fit(dataset)


def forget_training_cache_keys():
    """Delete the serving stamp and the test strategies' training locks (not the whole cache:
    with Redis it is shared)."""
    keys = [guardrail.STAMP_KEY] + [records.LOCK_KEY.format(key) for key in ("toy", "toy2", "toy_blend", "blocking")]
    records.cache().delete_many(keys)


@contextmanager
def fresh_training_state(locked_keys=()):
    """No training cache keys, no training locks of ``locked_keys`` and no loaded models in this
    process on entry; loaded models forgotten again on exit."""
    forget_training_cache_keys()
    for key in locked_keys:
        records.cache().delete(records.LOCK_KEY.format(key))
    loaded_models.forget_loaded_models()
    try:
        yield
    finally:
        loaded_models.forget_loaded_models()


@contextmanager
def eager_celery(propagate: bool):
    """Tasks run in this process even where a broker is configured; ``propagate``: their
    exceptions are raised to the caller (else recorded on the result, as a worker would)."""
    from celery import current_app

    conf = current_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, propagate
    try:
        yield
    finally:
        conf.task_always_eager, conf.task_eager_propagates = saved


@contextmanager
def routed_to(queue: str):
    """Tasks this process queues go to ``queue`` (a test worker's own) instead of the default one."""
    from celery import current_app

    saved = current_app.conf.task_routes

    def route(routes):
        current_app.conf.task_routes = routes
        current_app.amqp.flush_routes()
        current_app.amqp.__dict__.pop("router", None)  # built from the routes once, on first use

    route({"recommender.tasks.*": {"queue": queue}})
    try:
        yield
    finally:
        route(saved)


def strategies_settings(**paths):
    """``override_settings`` registering test strategies ({key: dotted path}), keeping the catalog."""
    return override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "STRATEGIES": paths})


def seed_shop(n_users=60, n_products=16, events_per_user=6, seed=0, start=None):
    """Products, users with profiles and events with a planted taste: each gender prefers a category.

    Returns ``(products, users)``. Events are spread over the hour before ``start`` (default now).
    """
    rng = np.random.default_rng(seed)
    products = [
        make_product(title=f"{CATEGORIES[number % 2]} thing {number}", category=CATEGORIES[number % 2])
        for number in range(n_products)
    ]
    by_category = {category: products[index::2] for index, category in enumerate(CATEGORIES)}
    User = get_user_model()
    start = start or timezone.now()
    users, profiles, events = [], [], []
    for number in range(n_users):
        user = User.objects.create(username=f"shopper-{seed}-{number}")
        gender = "fm"[number % 2]
        users.append(user)
        profiles.append(UserProfile(user=user, gender=gender, birth_year=1990, country="de"))
        favourites = by_category[CATEGORIES[number % 2]]
        for step in range(events_per_user):
            # Zipf-like favourites: the first products of a category are bought most.
            product = favourites[min(int(rng.zipf(1.6)) - 1, len(favourites) - 1)]
            events.append(Interaction(
                user=user, product=product, event=("view", "purchase")[step % 2],
                timestamp=start - datetime.timedelta(seconds=3600 - number * 10 - step),
            ))
    UserProfile.objects.bulk_create(profiles)
    Interaction.objects.bulk_create(events)
    return products, users


# --- fixtures of the training-layer tests (imported by name into their modules) ---------------------
@pytest.fixture
def fresh_versions_state():
    """An empty training cache state and no loaded models in this process, before and after."""
    with fresh_training_state():
        yield


@pytest.fixture
def eager_tasks():
    """Tasks run in this process even where a broker is configured: no worker serves these tests."""
    with eager_celery(propagate=True):
        yield


@pytest.fixture
def toy():
    with strategies_settings(toy=TOY_PATH, toy2=TOY_PATH):
        yield "toy"


@pytest.fixture
def shop(transactional_db):
    """A seeded shop; real commits, because activation bumps the serving stamp on commit."""
    return seed_shop()
