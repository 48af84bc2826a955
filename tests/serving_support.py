"""Helpers shared by the serving tests: a small catalog in the host's product model and
strategies fitted on it, served through ``recommender.service`` as if they were active (the
loaded-model registry is patched, as a serving process sees it)."""

import numpy as np
import pandas as pd

from recommender.catalog import get_adapter
from recommender.data.dataset import Dataset
from recommender.serving import loaded_models
from recommender.strategies.registry import create_strategy

CATEGORIES = ("Garden", "Kitchen", "Sports")
# Planted taste: women buy garden products, men sports products; kitchen is rarely bought.
SEGMENT_CATEGORY = {"f": "Garden", "m": "Sports"}


def make_catalog(per_category=4, categories=CATEGORIES):
    """Create products through the catalog adapter (works for any host catalog); return them."""
    adapter = get_adapter()
    # The adapter remembers categories it created; a previous test's were rolled back.
    adapter.forget_related_cache()
    products = []
    for category in categories:
        for number in range(per_category):
            product = adapter.build_product({
                "external_id": f"{category[:3].lower()}-{number}",
                "title": f"{category} product {number}",
                "description": f"A {category.lower()} thing, number {number}.",
                "category": category,
                "brand": f"{category}Co",
                "price": 10 + number,
                "in_stock": True,
            })
            product.save()
            products.append(product)
    return products


def category_of(product):
    return get_adapter().title_of(product).split()[0]


def catalog_dataset(products, users_per_segment=20, seed=0):
    """A Dataset over ``products`` with the planted segment taste; item ids are str(pk)."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({
        "item_id": [str(product.pk) for product in products],
        "title": [get_adapter().title_of(product) for product in products],
        "category": [category_of(product) for product in products],
    })
    by_category = {category: items.item_id[items.category == category].tolist() for category in CATEGORIES}
    users, interactions, clock = [], [], 1_700_000_000.0
    for gender, category in SEGMENT_CATEGORY.items():
        for number in range(users_per_segment):
            user_id = f"{gender}{number}"
            users.append({"user_id": user_id, "gender": gender, "age": 30})
            # The first product of the segment's category is its clear favourite.
            favourites = by_category[category]
            picks = [favourites[0]] + list(rng.choice(favourites, size=3))
            for item_id in picks:
                clock += 60
                interactions.append({"user_id": user_id, "item_id": item_id, "event": "purchase", "timestamp": clock})
    kitchen = by_category.get("Kitchen")
    if kitchen:
        interactions.append({"user_id": "f0", "item_id": kitchen[0], "event": "view", "timestamp": clock + 60})
    return Dataset(users=pd.DataFrame(users), items=items, interactions=pd.DataFrame(interactions))


def fit_strategies(dataset, keys=("popularity", "segment_popularity")):
    return {key: create_strategy(key, auto_tune=False).fit(dataset) for key in keys}


def serve(monkeypatch, models):
    """Serve ``models`` ({key: fitted strategy}) as the active versions; others have none."""
    monkeypatch.setattr(loaded_models, "get_active_strategy", models.get)
    monkeypatch.setattr(loaded_models, "models_stamp", lambda: "test-" + ",".join(sorted(models)))


def served_catalog(monkeypatch):
    """A small catalog with fast strategies fitted on it and served as the active versions."""
    catalog = make_catalog()
    serve(monkeypatch, fit_strategies(catalog_dataset(catalog)))
    return catalog
