"""The content strategy, its text encoders and the embedding cache."""

import logging

import numpy as np
import pytest
from django.test import override_settings

from recommender.strategies import text
from recommender.strategies.base import Context, Event, Strategy
from recommender.strategies.content import ContentStrategy, TfidfContentStrategy
from recommender.strategies.registry import create_strategy
from recommender.versions import specs
from recommender.testing.contract import StrategyContract
from recommender.testing.factories import planted_dataset


class TestContentContract(StrategyContract):
    strategy_key = "content"
    strategy_params = {"encoder": "tfidf"}
    uses_events = True
    uses_content = True


class TestTfidfContentContract(StrategyContract):
    strategy_key = "content_tfidf"
    uses_events = True
    uses_content = True


@pytest.fixture(scope="module")
def planted():
    return planted_dataset(n_users=120)


@pytest.fixture(scope="module")
def fitted(planted):
    return ContentStrategy(encoder="tfidf").fit(planted)


@pytest.fixture
def embedded_texts(monkeypatch):
    """Stand in a fast deterministic embedding for the model and record every text it embeds."""
    seen = []

    def embed(texts, model=None, batch_size=64, threads=None, device=None):
        seen.extend(texts)
        codes = np.array([[sum(map(ord, t)) * (i + 1) % 97 + 1 for i in range(8)] for t in texts], np.float32)
        return text.l2_normalise(codes)

    monkeypatch.setattr(text, "embed_texts", embed)
    return seen


def test_cache_embeds_only_new_or_changed_texts(tmp_path, embedded_texts):
    """A second pass through the cache embeds only texts that are new or whose text changed."""
    cache_path = tmp_path / "cache.npz"
    first = text.SentenceEncoder(model="fake-model")
    vectors = first.encode(["red drill", "blue cake", "green hose"])
    assert embedded_texts == ["red drill", "blue cake", "green hose"]
    first.cache.save(cache_path)

    second = text.SentenceEncoder(model="fake-model", cache=text.EmbeddingCache.load(cache_path, "fake-model"))
    again = second.encode(["red drill", "blue cake (new recipe)", "green hose", "yellow rake"])
    assert embedded_texts[3:] == ["blue cake (new recipe)", "yellow rake"]
    assert second.embedded_count == 2
    np.testing.assert_array_equal(again[[0, 2]], vectors[[0, 2]])


def test_identical_texts_are_embedded_once(embedded_texts):
    """Two products with the same text in one batch are embedded once and get the same vector."""
    encoder = text.SentenceEncoder(model="fake-model-twins")
    vectors = encoder.encode(["red drill", "blue cake", "red drill"])
    assert embedded_texts == ["red drill", "blue cake"]
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert len(encoder.cache) == 2


def test_cache_of_another_model_is_not_reused(tmp_path):
    """Vectors cached for one model are never served for another."""
    cache = text.EmbeddingCache("model-a")
    cache.put_many(["drill"], np.ones((1, 4), dtype=np.float32))
    cache.save(tmp_path / "cache.npz")
    assert len(text.EmbeddingCache.load(tmp_path / "cache.npz", "model-b")) == 0
    vectors, missing = text.EmbeddingCache.load(tmp_path / "cache.npz", "model-a").get_many(["drill", "cake"])
    assert missing.tolist() == [1]
    np.testing.assert_array_equal(vectors[0], np.ones(4))


@override_settings(RECOMMENDER={"TEXT_MODEL": "/no/such/model/directory"})
def test_missing_text_model_falls_back_to_tfidf(planted, caplog):
    """A TEXT_MODEL that cannot be loaded gives the TF-IDF fallback and a log line saying what to install."""
    with caplog.at_level(logging.WARNING, logger="recommender.strategies.text"):
        strategy = specs.resolve("content").build(encoder="auto").fit(planted)
    assert isinstance(strategy.encoder_, text.TfidfEncoder)
    assert strategy.encoder_.analyzer == "char_wb"
    assert "pip install" in caplog.text and "/no/such/model/directory" in caplog.text
    assert len(strategy.recommend(Context(), k=5).item_ids) == 5


@override_settings(RECOMMENDER={"TEXT_MODEL": "/no/such/model/directory"})
def test_sentence_encoder_required_is_a_clear_error(planted):
    """Asking for the sentence encoder explicitly when it is missing raises with the install hint."""
    with pytest.raises(text.TextModelUnavailable, match="pip install"):
        specs.resolve("content").build(encoder="sentence").fit(planted)


def test_character_tfidf_handles_chinese_text():
    """Character n-grams place Chinese product names near those sharing characters."""
    encoder = text.TfidfEncoder(dim=8).fit(["电动螺丝刀", "无线电钻 电动工具", "巧克力蛋糕", "草莓蛋糕", "园艺铲子"])
    vectors = encoder.encode(["电动螺丝刀 套装", "无线电钻 电动工具", "巧克力蛋糕"])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_similar_items_never_returns_the_item(fitted, planted):
    """similar_items gives k other products, most from the item's own category."""
    item = planted.meta["category_items"]["kitchen"][2]
    similar = fitted.similar_items(item, k=5)
    assert item not in similar.item_ids and len(similar) == 5
    assert sum(planted.meta["item_category"][i] == "kitchen" for i in similar.item_ids) >= 4
    assert all(reason.startswith("Similar to") for reason in similar.reasons)


def test_no_events_falls_back_to_popularity(fitted, planted):
    """An empty context ranks by training popularity, and new products still have finite scores."""
    scores = fitted.score(Context())
    counts = planted.interactions["item_id"].value_counts()
    assert fitted.item_ids[np.argmax(scores)] in counts.index[:5]
    assert np.isfinite(scores).all()


def test_new_product_is_scored_immediately_with_a_new_arrival_reason(fitted, planted, tmp_path):
    """A product added after a save/load is recommended to a session of its category, as a new arrival."""
    strategy = Strategy.load(fitted.save(tmp_path / "content"))
    kitchen = planted.meta["category_items"]["kitchen"]
    # The same product text as the one the visitor bought: the new product must come first.
    twin = planted.items.loc[[kitchen[1]]].rename(index={kitchen[1]: "kettle-2000"})
    strategy.add_items(twin)
    context = Context(events=(Event(kitchen[0], "view"), Event(kitchen[1], "purchase")))
    recommendations = strategy.recommend(context, k=10)
    assert recommendations.item_ids[0] == "kettle-2000"
    assert recommendations.reasons[0].startswith("New arrival, similar to")
    assert "you bought" in recommendations.reasons[0]


def test_stronger_and_recent_events_weigh_more(fitted, planted):
    """A purchase outweighs a view, and the newest of two views outweighs the older one."""
    garden, books = planted.meta["category_items"]["garden"][0], planted.meta["category_items"]["books"][0]
    weights = fitted.context_weights([
        Context(events=(Event(garden, "view"), Event(books, "purchase"))),
        Context(events=(Event(garden, "view"), Event(books, "view"))),
    ]).toarray()
    garden_position, books_position = fitted.item_positions([garden, books])
    assert weights[0, books_position] > weights[0, garden_position]
    assert weights[1, books_position] > weights[1, garden_position]


def test_tfidf_baseline_is_registered_with_word_ngrams():
    """content_tfidf is the word n-gram TF-IDF baseline."""
    strategy = create_strategy("content_tfidf")
    assert isinstance(strategy, TfidfContentStrategy)
    assert strategy.params["encoder"] == "tfidf" and strategy.params["tfidf_analyzer"] == "word"
    assert strategy.params["tfidf_dim"] is None, "the baseline keeps the full sparse TF-IDF vectors"


@pytest.mark.slow
def test_real_minilm_model_knows_drills_from_cakes(tmp_path):
    """The packaged MiniLM model, loaded offline, puts a cordless drill nearer a screwdriver than a cake."""
    vectors = text.embed_texts(["cordless drill", "electric screwdriver", "chocolate cake"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    # And through the strategy: the artifact round trip keeps the sentence encoder and its vectors.
    strategy = ContentStrategy(encoder="sentence").fit(planted_dataset(n_users=40))
    loaded = Strategy.load(strategy.save(tmp_path / "content"))
    assert isinstance(loaded.encoder_, text.SentenceEncoder)
    np.testing.assert_array_equal(loaded.item_vectors_, strategy.item_vectors_)


class _RecordingModel:
    """Stands in for a SentenceTransformer: records the batches it is asked to embed."""

    max_seq_length = 256

    def __init__(self):
        self.calls = []

    def get_sentence_embedding_dimension(self):
        return 4

    def encode(self, texts, batch_size, **options):
        import torch

        self.calls.append({"texts": list(texts), "max_seq_length": self.max_seq_length,
                           "threads": torch.get_num_threads(), "grad": torch.is_grad_enabled()})
        return np.array([[len(t), 1.0, t.count("a"), 2.0] for t in texts], dtype=np.float32)


def test_embed_texts_dedupes_sorts_and_restores_model_settings(monkeypatch):
    """Each distinct text is embedded once, shortest first, 128 tokens at most, no autograd; rows keep the input order."""
    import torch

    model = _RecordingModel()
    monkeypatch.setattr(text, "load_text_model", lambda model_name=None, device=None: model)
    threads_before = torch.get_num_threads()
    texts = ["a long banana text", "kiwi", "a long banana text", "fig tree"]
    vectors = text.embed_texts(texts, threads=1)
    call, = model.calls
    assert call["texts"] == ["kiwi", "fig tree", "a long banana text"]
    assert call["max_seq_length"] == 128 and call["threads"] == 1 and call["grad"] is False
    assert model.max_seq_length == 256 and torch.get_num_threads() == threads_before
    expected = text.l2_normalise(np.array([[len(t), 1.0, t.count("a"), 2.0] for t in texts], dtype=np.float32))
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)


def test_blend_weight_is_learned_on_training_items_and_saved(planted, tmp_path):
    """α and the half-life are the best pseudo-new setting on the training data, and survive save/load."""
    strategy = ContentStrategy(encoder="tfidf").fit(planted)
    assert strategy.word_vectors_ is not None and strategy.blend_validation_
    best = max(strategy.blend_validation_, key=strategy.blend_validation_.get)
    assert best == f"alpha={strategy.blend_weight_:g} half_life={strategy.recency_half_life_:g}"
    assert strategy.blend_validation_[best] > 0
    loaded = Strategy.load(strategy.save(tmp_path / "content"))
    assert (loaded.blend_weight_, loaded.recency_half_life_) == (strategy.blend_weight_, strategy.recency_half_life_)
    kitchen = planted.meta["category_items"]["kitchen"]
    context = Context(events=(Event(kitchen[0], "view"), Event(kitchen[3], "purchase")))
    np.testing.assert_allclose(loaded.score(context), strategy.score(context), rtol=1e-5)


def test_fixed_blend_weight_is_kept_and_one_context_scores_like_a_batch(planted):
    """A given blend_weight is used as is, and a single context scores as it does inside a batch."""
    strategy = ContentStrategy(encoder="tfidf", blend_weight=0.3).fit(planted)
    assert strategy.blend_weight_ == 0.3 and strategy.blend_validation_ == {}
    garden = planted.meta["category_items"]["garden"]
    contexts = [Context(events=(Event(garden[0], "view"), Event(garden[2], "cart"))), Context()]
    batch = strategy.score_batch(contexts)
    np.testing.assert_allclose(strategy.score_batch(contexts[:1])[0], batch[0], rtol=1e-5, atol=1e-6)
    word_only = ContentStrategy(encoder="tfidf", blend_weight=0.0).fit(planted).score_batch(contexts[:1])[0]
    assert not np.allclose(word_only, batch[0]), "the word TF-IDF share changes the scores"
