"""The seeded demo shop, trained with real strategies, for the acceptance tests.

``seeded_demo_world`` seeds the demo catalogue with ``seed_demo`` (a smaller shop of the same
generator: sessions with a mission, complementary categories, new products), snapshots it from
the database as training does and fits the strategies serving uses (the hybrid given its
already fitted components, as a train-all run hands them). They are served as the active
versions (``serving_support.serve``). Fitting takes a few seconds, so a test module builds the
world once (``django_db_blocker``) and removes it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.management import call_command

from recommender.data.snapshot import build_dataset_from_db
from recommender.data.synthetic import make_shop_dataset
from recommender.models import Interaction, Rating, UserProfile
from recommender.strategies.registry import create_strategy

# A smaller shop from the demo's generator (the demo: 5000 shoppers, 2000 products, 24 categories).
WORLD_SIZE = {"users": 1500, "products": 480, "categories": 12, "events": 60_000, "seed": 0}
# The text model is a setting; the world uses the TF-IDF encoder so that it fits in seconds.
# item_knn as the demo trains it (shop_demo/settings.py).
TRAINING_PARAMS = {
    "content": {"encoder": "tfidf"},
    "item_knn": {"session_gap_seconds": 1800},
    "hybrid": {"components": ["segment_popularity", "demographic", "content", "item_knn"],
               "component_params": {"content": {"encoder": "tfidf"}, "item_knn": {"session_gap_seconds": 1800}},
               "max_validation_users": 300},
}
COMPONENT_KEYS = ("popularity", "segment_popularity", "demographic", "content", "item_knn")


@dataclass
class DemoWorld:
    models: dict
    dataset: object
    complementary: dict  # category name -> complementary category names (the generator's truth)


def seeded_demo_world() -> DemoWorld:
    """Seed the demo shop in the database and fit the strategies; see the module docstring."""
    call_command("seed_demo", verbosity=0, **WORLD_SIZE)
    dataset = build_dataset_from_db()
    models = {key: create_strategy(key, **TRAINING_PARAMS.get(key, {})).fit(dataset) for key in COMPONENT_KEYS}
    hybrid_keys = TRAINING_PARAMS["hybrid"]["components"]
    models["hybrid"] = create_strategy("hybrid", **TRAINING_PARAMS["hybrid"]).fit(
        dataset, components={key: models[key] for key in hybrid_keys})
    truth = make_shop_dataset(seed=WORLD_SIZE["seed"], n_users=WORLD_SIZE["users"], n_items=WORLD_SIZE["products"],
                              n_categories=WORLD_SIZE["categories"], n_events=WORLD_SIZE["events"])
    return DemoWorld(models=models, dataset=dataset, complementary=truth.meta["complementary_categories"])


def remove_demo_world() -> None:
    from shop_demo.catalog.models import Category, Product

    Rating.objects.all().delete()
    Interaction.objects.all().delete()
    UserProfile.objects.all().delete()
    get_user_model().objects.all().delete()
    Product.objects.all().delete()
    Category.objects.all().delete()
