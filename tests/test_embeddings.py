"""The shared product-embedding cache: only new or changed product texts are embedded."""

import pytest

from recommender import artifacts, embeddings
from recommender.catalog import get_adapter
from recommender.conf import settings
from recommender.strategies.text import TextModelUnavailable, load_text_model
from recommender.testing.factories import make_product


@pytest.fixture
def text_model():
    try:
        load_text_model(settings.TEXT_MODEL)
    except TextModelUnavailable as missing:
        pytest.skip(str(missing))
    return settings.TEXT_MODEL


@pytest.mark.slow
def test_embed_products_embeds_only_new_or_changed_texts(db, text_model):
    """A second run embeds nothing; a new product and an edited one are the only texts embedded."""
    products = [make_product(title=f"Garden hose {n}", description="Green and long.") for n in range(3)]
    assert embeddings.embed_products() == {"products": 3, "embedded": 3, "model": text_model}
    assert artifacts.get_storage().exists(embeddings.shared_cache_name(text_model))
    assert embeddings.embed_products()["embedded"] == 0
    make_product(title="Kitchen knife", description="Sharp.")
    edited = products[0]
    description_field = get_adapter().field_paths["description"]
    type(edited)._default_manager.filter(pk=edited.pk).update(**{description_field: "Blue and short."})
    assert embeddings.embed_products() == {"products": 4, "embedded": 2, "model": text_model}


def test_cache_name_is_a_safe_file_name():
    """A model given as a directory path becomes one file name under the artifact prefix."""
    name = embeddings.shared_cache_name("/models/my model (zh)/")
    assert name.startswith("recommender/models/embeddings/") and name.endswith(".npz")
    assert " " not in name and "(" not in name
