"""versions.specs: the shop's settings become strategy params, once per run (EVENT_WEIGHTS, the text
model, TRAINING_PARAMS, host strategies), for every strategy and the hybrid's components."""

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from recommender.data.dataset import DEFAULT_EVENT_WEIGHTS
from recommender.testing.factories import planted_dataset
from recommender.versions import specs

from .training_support import TOY_PATH, ToyStrategy
from .training_support import toy  # noqa: F401 (fixtures)


# Small, fast params for every built-in strategy (the settings under test are not among them).
FAST = {
    "generative": {"epochs": 2, "batch_size": 32, "hidden_dim": 16, "latent_dim": 4, "threads": 1},
    "behavior": {"epochs": 2, "batch_size": 32, "model_dim": 16, "feedforward_dim": 32, "layers": 1,
                 "content_dim": 8, "threads": 1},
    "content": {"encoder": "tfidf"},
    "content_tfidf": {},
    "hybrid": {"components": ["segment_popularity", "item_knn", "content"],
               "component_params": {"content": {"encoder": "tfidf"}}},
}
SHOP_WEIGHTS = {"impression": 0.0, "view": 0.25, "click": 0.5, "cart": 7.0, "purchase": 11.0, "rating": 2.0}


def event_weight_tables_used_by_fit(key, monkeypatch, planted):
    """The event-weight tables ``key``'s fit (its spec under the current settings) asked the
    dataset for: ``Dataset.event_weights`` is the one place every strategy gets its weights from."""
    from recommender.data.dataset import DEFAULT_EVENT_WEIGHTS, Dataset

    tables = []
    original = Dataset.event_weights

    def recording(self, weights=None):
        tables.append(tuple(sorted({**DEFAULT_EVENT_WEIGHTS, **(weights or {})}.items())))
        return original(self, weights)

    monkeypatch.setattr(Dataset, "event_weights", recording)
    strategy = specs.resolve(key).build(**FAST.get(key, {}))
    strategy.fit(planted)
    return set(tables), strategy


@pytest.mark.slow
@pytest.mark.parametrize("key", ["popularity", "segment_popularity", "item_knn", "demographic", "generative",
                                 "behavior", "content", "hybrid"])
def test_event_weights_setting_reaches_every_strategy(key, monkeypatch):
    """Changing RECOMMENDER["EVENT_WEIGHTS"] changes the table each strategy trains (and scores) with."""
    pytest.importorskip("torch")
    planted = planted_dataset()
    default_tables, default_strategy = event_weight_tables_used_by_fit(key, monkeypatch, planted)
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "EVENT_WEIGHTS": SHOP_WEIGHTS}):
        shop_tables, shop_strategy = event_weight_tables_used_by_fit(key, monkeypatch, planted)
    assert default_tables == {tuple(sorted(DEFAULT_EVENT_WEIGHTS.items()))}
    assert shop_tables == {tuple(sorted(SHOP_WEIGHTS.items()))}
    # Scoring reads the same table as training (a context's events are weighted by it).
    assert shop_strategy.params["event_weights"] == SHOP_WEIGHTS
    assert default_strategy.params["event_weights"] == DEFAULT_EVENT_WEIGHTS


def test_the_event_weights_default_is_the_numeric_core_default():
    """conf's EVENT_WEIGHTS default and data.dataset's DEFAULT_EVENT_WEIGHTS are the same table."""
    from recommender.conf import DEFAULTS

    assert DEFAULTS["EVENT_WEIGHTS"] == DEFAULT_EVENT_WEIGHTS


def test_text_model_settings_become_params_of_the_strategies_that_embed_text():
    """TEXT_MODEL, its device and threads reach content, behavior and the hybrid's content component."""
    text = {"TEXT_MODEL": "/models/multilingual", "TEXT_MODEL_DEVICE": "cuda", "TEXT_MODEL_THREADS": 3}
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, **text}):
        content, behavior, hybrid = (specs.resolve(key).params for key in ("content", "behavior", "hybrid"))
    for params in (content, behavior, hybrid["component_params"]["content"]):
        assert (params["text_model"], params["text_model_device"], params["text_model_threads"]) == (
            "/models/multilingual", "cuda", 3)
    assert "text_model" not in specs.resolve("popularity").params


def test_training_params_win_over_shared_settings_and_reach_the_hybrids_components():
    """TRAINING_PARAMS of a strategy override the shared settings, also inside the hybrid."""
    params = {"content": {"event_weights": {"view": 9.0}, "encoder": "tfidf"}, "hybrid": {"components": ["content"]}}
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "TRAINING_PARAMS": params,
                                        "RANDOM_SEED": 7}):
        content, hybrid = specs.resolve("content"), specs.resolve("hybrid")
    assert content.params["event_weights"] == {"view": 9.0} and content.params["seed"] == 7
    assert hybrid.params["component_params"] == {"content": {k: v for k, v in content.params.items() if k != "seed"}}
    assert hybrid.params["component_paths"] == {}  # content is built in


def test_a_host_strategy_is_resolved_from_the_settings(toy):
    """A key registered in RECOMMENDER["STRATEGIES"] resolves to its class; an unknown key names the known ones."""
    spec = specs.resolve("toy")
    assert spec.strategy_class is ToyStrategy and isinstance(spec.build(), ToyStrategy)
    with pytest.raises(ImproperlyConfigured, match="Known strategies: .*toy"):
        specs.resolve("nope")


def test_a_host_component_of_the_hybrid_reaches_it_by_path(toy):
    """A host strategy named among the hybrid's components is given to the hybrid by its dotted path."""
    params = {"hybrid": {"components": ["toy", "popularity"]}}
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "STRATEGIES": {"toy": TOY_PATH},
                                        "TRAINING_PARAMS": params}):
        hybrid = specs.resolve("hybrid")
    assert hybrid.component_keys == ("toy", "popularity")
    assert hybrid.params["component_paths"] == {"toy": TOY_PATH}
    fitted = hybrid.build(learn_weights=False).fit(planted_dataset())
    assert isinstance(fitted.components_["toy"], ToyStrategy)
