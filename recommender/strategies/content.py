"""Content strategy: products recommended by how close their text is to a visitor's taste.

Every product's text (title, brand, category path, description) becomes a unit vector (the
pretrained sentence model, or TF-IDF; see ``text.py``). A visitor's taste is the weighted mean of
the vectors of the products they interacted with (stronger events, longer dwell and more recent
events weigh more); every product is scored by cosine to it. Because only text is needed, a
product nobody has bought yet is scored like any other: this is the strategy for new products,
and for "similar products" next to the product in view. A visitor with no events gets a
popularity prior, so the list is never empty.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import DEFAULT_EVENT_WEIGHTS, Dataset
from .base import Context, Recommendations, Strategy, top_k_indices
from .text import (EmbeddingCache, SentenceEncoder, TextModelUnavailable, encoder_from_state, make_encoder,
                   text_key)

logger = logging.getLogger(__name__)

EVENT_VERBS = {"view": "viewed", "click": "viewed", "cart": "added to your cart", "purchase": "bought",
               "rating": "rated"}
TITLE_LENGTH = 60


def items_text(items: pd.DataFrame) -> list[str]:
    """Texts of an items frame (indexed by item id), built exactly as ``Dataset.item_text``."""
    frame = items.reset_index().rename(columns={items.index.name or "index": "item_id"})
    empty = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                          "event": pd.Series(dtype=str)})
    return Dataset(users=pd.DataFrame({"user_id": pd.Series(dtype=str)}), items=frame, interactions=empty).item_text()


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float32)


def _event_weight_table(overrides: dict | None) -> dict[str, float]:
    try:
        from ..conf import settings

        table = dict(settings.EVENT_WEIGHTS)
    except Exception:  # Django not configured
        table = dict(DEFAULT_EVENT_WEIGHTS)
    return {**table, **(overrides or {})}


class ContentStrategy(Strategy):
    """Taste-vector and similar-product recommendations from product text.

    Parameters (``default_params``)
    -------------------------------
    encoder
        ``"auto"`` (sentence model, TF-IDF when it is not installed), ``"sentence"`` or ``"tfidf"``.
    text_model
        Package name or model directory; None: ``RECOMMENDER["TEXT_MODEL"]``.
    embedding_cache
        Path of an ``EmbeddingCache`` file to reuse and update (sentence encoder only).
    tfidf_analyzer, tfidf_ngram_range, tfidf_dim
        The TF-IDF fallback's n-grams and SVD dimensions.
    recency_half_life
        Events this many positions older than the latest weigh half as much.
    dwell_reference_seconds
        Dwell at which a view weighs its plain event weight (longer counts more, capped at 2×).
    product_weight
        Weight of the product in view, relative to the strongest event weight.
    popularity_weight
        How much the popularity prior adds to a cosine score (a tie-breaker among similar items).
    event_weights
        Overrides of ``RECOMMENDER["EVENT_WEIGHTS"]``.
    """

    key = "content"
    label = "Similar products"
    default_params = {
        "encoder": "auto",
        "text_model": None,
        "embedding_cache": None,
        "tfidf_analyzer": "char_wb",
        "tfidf_ngram_range": (2, 4),
        "tfidf_dim": 128,
        "recency_half_life": 5.0,
        "dwell_reference_seconds": 60.0,
        "product_weight": 2.0,
        "popularity_weight": 0.05,
        "event_weights": None,
    }

    # --- fitting -------------------------------------------------------------------------------
    def _make_encoder(self):
        cache = None
        if self.params["encoder"] != "tfidf" and self.params["embedding_cache"]:
            model = self.params["text_model"] or SentenceEncoder().model
            cache = EmbeddingCache.load(self.params["embedding_cache"], model)
        return make_encoder(
            self.params["encoder"], model=self.params["text_model"], cache=cache,
            analyzer=self.params["tfidf_analyzer"], ngram_range=tuple(self.params["tfidf_ngram_range"]),
            dim=self.params["tfidf_dim"] and int(self.params["tfidf_dim"]), seed=self.seed,
        )

    def _fit(self, dataset: Dataset) -> None:
        texts = dataset.item_text()
        self.encoder_ = self._make_encoder().fit(texts)
        self.text_keys_ = self._text_keys(texts)
        self.item_vectors_ = self.encoder_.encode(texts)
        if isinstance(self.encoder_, SentenceEncoder) and self.params["embedding_cache"]:
            self.encoder_.cache.save(self.params["embedding_cache"])
        self.event_weights_ = _event_weight_table(self.params["event_weights"])
        weights = dataset.event_weights(self.event_weights_)
        interest = np.bincount(dataset.item_codes, weights=weights, minlength=dataset.n_items)
        self.trained_ = interest > 0
        self.popularity_ = (np.log1p(interest) / max(np.log1p(interest.max()), 1e-9)).astype(np.float32)
        self.titles_ = dataset.items["title"].fillna("").astype(str).to_numpy(dtype=object)

    def _text_keys(self, texts: Sequence[str]) -> np.ndarray:
        model = getattr(self.encoder_, "model", self.encoder_.kind)
        return np.array([text_key(model, text) for text in texts], dtype="<U40")

    def embedding_cache(self) -> EmbeddingCache:
        """The catalogue's vectors as an ``EmbeddingCache`` (e.g. to seed the next training run)."""
        keys, first = np.unique(self.text_keys_, return_index=True)
        model = getattr(self.encoder_, "model", self.encoder_.kind)
        return EmbeddingCache(model, keys=keys.tolist(), vectors=self.item_vectors_[first])

    def _add_items(self, new_items: pd.DataFrame) -> None:
        texts = items_text(new_items)
        try:
            vectors = self.encoder_.encode(texts)
        except TextModelUnavailable as error:
            # Loaded where the model is missing: the new products fall back to the popularity prior.
            logger.warning("Cannot embed %d new products (%s); they get no content score.", len(texts), error)
            vectors = np.zeros((len(texts), self.item_vectors_.shape[1]), dtype=np.float32)
        if sp.issparse(self.item_vectors_):
            self.item_vectors_ = sp.vstack([self.item_vectors_, sp.csr_matrix(vectors)], format="csr")
        else:
            self.item_vectors_ = np.vstack([self.item_vectors_, vectors])
        self.text_keys_ = np.concatenate([self.text_keys_, self._text_keys(texts)])
        self.trained_ = np.concatenate([self.trained_, np.zeros(len(texts), dtype=bool)])
        self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(texts), dtype=np.float32)])
        self.titles_ = np.concatenate([self.titles_, new_items["title"].fillna("").astype(str).to_numpy(dtype=object)])

    # --- scoring -------------------------------------------------------------------------------
    def context_weights(self, contexts: Sequence[Context]) -> sp.csr_matrix:
        """Contexts × items matrix of how much each known event item says about the taste.

        Weight = event weight × recency decay (newest 1, halving every ``recency_half_life``
        events) × dwell factor; the product in view counts ``product_weight`` × the top event weight.
        """
        half_life = float(self.params["recency_half_life"])
        dwell_reference = float(self.params["dwell_reference_seconds"])
        product_weight = float(self.params["product_weight"]) * max(self.event_weights_.values())
        rows, cols, values = [], [], []
        for row, context in enumerate(contexts):
            events = context.events
            positions = self.item_positions([event.item_id for event in events]) if events else np.array([], int)
            for age, (event, position) in enumerate(zip(reversed(events), positions[::-1])):
                weight = self.event_weights_.get(event.event, 0.0)
                if position < 0 or weight <= 0:
                    continue
                weight *= 0.5 ** (age / half_life)
                if event.dwell_seconds:
                    weight *= float(np.clip(np.log1p(event.dwell_seconds) / np.log1p(dwell_reference), 0.25, 2.0))
                rows.append(row)
                cols.append(position)
                values.append(weight)
            if context.product_id is not None:
                position = self.item_positions([context.product_id])[0]
                if position >= 0:
                    rows.append(row)
                    cols.append(position)
                    values.append(product_weight)
        matrix = sp.csr_matrix((np.asarray(values, np.float32), (rows, cols)), shape=(len(contexts), self.n_items))
        matrix.sum_duplicates()
        return matrix

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        weights = self.context_weights(contexts)
        taste = weights @ self.item_vectors_
        if sp.issparse(taste):
            taste = taste.tocsr()
            norms = np.sqrt(np.asarray(taste.multiply(taste).sum(axis=1)).ravel())
        else:
            norms = np.linalg.norm(taste, axis=1)
        has_taste = norms > 0
        scores = np.empty((len(contexts), self.n_items), dtype=np.float32)
        scores[:] = self.popularity_
        if has_taste.any():
            unit_taste = sp.diags(1.0 / norms[has_taste]) @ taste[has_taste]
            similarity = _dense(unit_taste @ self.item_vectors_.T)
            scores[has_taste] = similarity + float(self.params["popularity_weight"]) * self.popularity_
        # The items the taste came from are what the visitor already has: never "similar to itself".
        seen_rows, seen_cols = weights.nonzero()
        scores[seen_rows, seen_cols] = -np.inf
        return scores

    # --- explanations and similar products -----------------------------------------------------
    def _title(self, position: int) -> str:
        title = str(self.titles_[position]).strip() or str(self.item_ids[position])
        return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1] + "…"

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        weights = self.context_weights([context])
        source_positions = weights.indices
        if source_positions.size == 0:
            return ["New arrival" if not self.trained_[p] else "Popular in the shop" for p in item_positions]
        # The source each item is most similar to names the reason.
        similarity = _dense(self.item_vectors_[item_positions] @ self.item_vectors_[source_positions].T)
        best_sources = source_positions[np.argmax(similarity, axis=1)]
        verbs = {int(p): EVENT_VERBS.get(e.event, "viewed")
                 for e, p in zip(context.events, self.item_positions(context.event_item_ids)) if p >= 0}
        product_position = self.item_positions([context.product_id])[0] if context.product_id is not None else -1
        reasons = []
        for item, source in zip(item_positions, best_sources):
            title = self._title(source)
            if source == product_position:
                similar = f"Similar to {title}"
            else:
                similar = f"Similar to {title} you {verbs.get(int(source), 'viewed')}"
            reasons.append(f"New arrival, {similar[0].lower()}{similar[1:]}" if not self.trained_[item] else similar)
        return reasons

    def similar_items(self, item_id: str, k: int = 10, exclude: Sequence[str] = ()) -> Recommendations:
        """The ``k`` products whose text is closest to ``item_id``'s (never the item itself)."""
        position = self.item_positions([item_id])[0]
        if position < 0:
            raise KeyError(f"Unknown item id {item_id!r}; add it with add_items() first.")
        return self.recommend(Context(product_id=str(item_id)), k=k, exclude=exclude)

    # --- persistence ---------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        encoder_state, encoder_arrays = self.encoder_.get_state()
        state = {"encoder": encoder_state, "event_weights": self.event_weights_}
        (directory / "content.json").write_text(json.dumps(state, indent=2))
        if sp.issparse(self.item_vectors_):
            sp.save_npz(directory / "content_vectors.npz", self.item_vectors_)
        else:
            encoder_arrays["item_vectors"] = self.item_vectors_
        np.savez(directory / "content.npz", trained=self.trained_,
                 text_keys=self.text_keys_,
                 popularity=self.popularity_, titles=self.titles_.astype(str), **encoder_arrays)

    def _load_state(self, directory: Path) -> None:
        state = json.loads((directory / "content.json").read_text())
        with np.load(directory / "content.npz", allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        self.encoder_ = encoder_from_state(state["encoder"], arrays)
        self.event_weights_ = state["event_weights"]
        sparse_path = directory / "content_vectors.npz"
        self.item_vectors_ = sp.load_npz(sparse_path).tocsr() if sparse_path.exists() else arrays["item_vectors"]
        self.trained_ = arrays["trained"]
        self.popularity_ = arrays["popularity"]
        self.titles_ = arrays["titles"].astype(object)
        self.text_keys_ = arrays["text_keys"]
        if isinstance(self.encoder_, SentenceEncoder):
            # The artifact's own vectors are the cache: a product re-added with the same text is not re-embedded.
            self.encoder_.cache = self.embedding_cache()


class TfidfContentStrategy(ContentStrategy):
    """The TF-IDF baseline: the same scoring over raw sparse word n-gram TF-IDF vectors (no pretrained model)."""

    key = "content_tfidf"
    label = "Similar products"
    default_params = {**ContentStrategy.default_params, "encoder": "tfidf", "tfidf_analyzer": "word",
                      "tfidf_ngram_range": (1, 2), "tfidf_dim": None}
