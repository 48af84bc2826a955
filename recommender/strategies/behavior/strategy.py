"""``behavior``: a small Transformer over the first events of a user or session.

The input sequence is a profile token (a projection of the one-hot profile) followed by the
events, oldest first; each event token is

    item representation + event-type embedding + dwell-bucket embedding + position embedding,

and the item representation is a learned id embedding (only for items with training
interactions; zero for the others) plus a projection of the item's content vector (TF-IDF
reduced by truncated SVD, or MiniLM sentence embeddings). The output layer is tied to the same
item representations, so a product never seen in training still gets a real score from its
text, both as an input event and as a candidate.

Training: warm users' first ``max_events`` events in time order, causal attention, each
position predicting the next interacted item with a logQ-corrected sampled softmax (an exact
softmax for small catalogues). A share of id embeddings is dropped per batch so that the
content path carries signal on its own, and a share of profiles is hidden so that anonymous
sessions are in-sample. An empty context is predicted from the profile token alone.

So that a new visitor is never served worse than by plain popularity, the item biases start at
the log of each item's training share, the best epoch (the untrained start included) is picked
by NDCG@10 over the catalogue on validation users (no event revealed; half revealed, with and
without the profile), and those users choose how far the scores back off to popularity
(``history["prior_weights"]``, for contexts without and with known events).

The token arrays are built in ``tokens.py``, the network is ``network.py``, its training loop
``trainer.py``; item text is embedded by the shared encoders of ``strategies/text.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.dataset import Dataset
from ...data.features import ProfileEncoder
from ..base import Context, Event, Strategy
from ..context import context_rows
from ..text import SentenceEncoder, TfidfEncoder, encoder_from_state, items_text, make_encoder
from ..torch_support import (
    load_torch_state,
    log_prior,
    mix_with_prior,
    profile_bags,
    profile_matrix,
    read_json,
    require_torch,
    save_torch_state,
    torch_session,
    user_profiles_frame,
    write_json,
)
from .network import make_network
from .tokens import context_tokens, first_events
from .trainer import NO_BACK_OFF, BehaviorTrainer

TEXT_ENCODERS = ("tfidf", "minilm")
# Character n-grams of TF-IDF item vectors (word analyzer: word 1–2-grams).
CHAR_NGRAMS = (3, 5)
# Catalogues this small keep n-grams of a single product (else an n-gram needs two).
SMALL_TEXT_CATALOGUE = 50


class BehaviorStrategy(Strategy):
    """Transformer over (profile, first events) predicting the next item, content-aware."""

    key = "behavior"
    label = "Suggested from what you looked at"
    default_params = {
        "max_events": 20,
        "model_dim": 64,
        "heads": 2,
        "layers": 2,
        "feedforward_dim": 128,
        "dropout": 0.1,
        "content_dim": 64,
        "text_encoder": "tfidf",
        # The sentence model of ``text_encoder="minilm"``: package or directory (None: the
        # default model), device and CPU threads (None: the CPU, at most two threads).
        "text_model": None,
        "text_model_device": None,
        "text_model_threads": None,
        "tfidf_analyzer": "char_wb",
        "epochs": 10,
        "patience": 2,
        "batch_size": 256,
        "learning_rate": 3e-3,
        "negatives": 512,
        "id_dropout": 0.2,
        "profile_dropout": 0.25,
        "validation_share": 0.1,
        "max_validation_users": 2000,
        # Wall-clock cap on training (None: none); the best epoch so far is kept. A retrain must
        # not hold a shared 2-core worker for many minutes on a large shop.
        "max_seconds": 120.0,
        # Ratings at or above it are a choice (None: every rating): the popularity prior counts only
        # choices, and validation users must find them. Every event still enters the sequences.
        "positive_threshold": None,
        # One thread: on a shared 2-core machine a second OpenMP thread spin-waits for a core.
        "threads": 1,
        # Weight of each event type (None: ``DEFAULT_EVENT_WEIGHTS``); events weighing 0 are
        # left out of the training sequences. Training passes the shop's ``EVENT_WEIGHTS``.
        "event_weights": None,
    }

    def __init__(self, **params):
        require_torch()
        super().__init__(**params)
        if self.params["text_encoder"] not in TEXT_ENCODERS:
            raise ValueError(f"behavior: text_encoder must be one of {TEXT_ENCODERS}, got {self.params['text_encoder']!r}")
        self.network = None
        self.encoder: ProfileEncoder | None = None
        self.text_encoder = None
        self.content = np.zeros((0, 0), dtype=np.float32)
        self.id_rows = np.zeros(0, dtype=np.int64)
        self.item_counts = np.zeros(0, dtype=np.float64)
        self.item_log_prior = np.zeros(0, dtype=np.float32)
        self.history = {}
        self._item_matrix = None

    # --- training ------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        params = self.params
        texts = dataset.item_text()
        self.text_encoder = self._make_text_encoder(len(texts)).fit(texts)
        self.content = np.asarray(self.text_encoder.encode(texts), dtype=np.float32)
        # The sequences are what a served context would hold: never impressions.
        mask = (dataset.event_weights(self.params["event_weights"]) > 0) & context_rows(dataset) & (dataset.item_codes >= 0)
        self.item_counts = np.bincount(dataset.item_codes[mask], minlength=dataset.n_items).astype(np.float64)
        # Id row 0 is the shared zero row of items without training interactions.
        self.id_rows = np.zeros(dataset.n_items, dtype=np.int64)
        warm = np.flatnonzero(self.item_counts > 0)
        self.id_rows[warm] = np.arange(1, len(warm) + 1)
        self.encoder = ProfileEncoder().fit(dataset.users)
        # What counts as a choice (ratings at or above positive_threshold, every other event): the
        # popularity the scores back off to, and what the validation users must find.
        positive = dataset.is_positive(params["positive_threshold"]) if params["positive_threshold"] is not None else None
        sequences = first_events(dataset, mask, int(params["max_events"]), positive)
        profiles = profile_matrix(self.encoder, user_profiles_frame(dataset).iloc[sequences["users"]])
        chosen = mask if positive is None else mask & positive
        self.item_log_prior = log_prior(np.bincount(dataset.item_codes[chosen], minlength=dataset.n_items))
        with torch_session(self.seed, params["threads"]) as torch:
            cold_prior = self.item_log_prior.min() if len(warm) < len(self.item_counts) else None
            self.network = self._build_network(torch, self.item_log_prior[warm], cold_prior)
            rng = np.random.default_rng(self.seed)
            trainer = BehaviorTrainer(self.network, params, torch, rng, sequences, profiles, self.item_counts,
                                      self._tensors(torch), self.item_log_prior)
            self.history = trainer.run()
            self.network.eval()
            self._refresh_item_matrix(torch)

    def _make_text_encoder(self, n_texts: int):
        """TF-IDF + SVD item vectors, or the sentence model ("minilm"; TF-IDF where it is missing)."""
        params = self.params
        word = params["tfidf_analyzer"] == "word"
        tfidf = {"analyzer": params["tfidf_analyzer"], "ngram_range": (1, 2) if word else CHAR_NGRAMS,
                 "dim": int(params["content_dim"]), "seed": self.seed,
                 "min_df": 2 if n_texts >= SMALL_TEXT_CATALOGUE else 1}
        if params["text_encoder"] == "minilm":
            return make_encoder("auto", model=params["text_model"], device=params["text_model_device"],
                                threads=params["text_model_threads"], **tfidf)
        return TfidfEncoder(**tfidf)

    def _build_network(self, torch, id_log_prior=None, cold_log_prior=None):
        params = self.params
        return make_network(
            torch,
            n_ids=int(self.id_rows.max()) + 1 if len(self.id_rows) else 1,
            n_profile=self.encoder.n_features + 1,
            content_dim=self.content.shape[1],
            model_dim=int(params["model_dim"]),
            heads=int(params["heads"]),
            layers=int(params["layers"]),
            feedforward_dim=int(params["feedforward_dim"]),
            dropout=float(params["dropout"]),
            max_positions=int(params["max_events"]) + 1,
            id_log_prior=id_log_prior,
            cold_log_prior=cold_log_prior,
        )

    def _refresh_item_matrix(self, torch) -> None:
        """Cache every item's output representation and bias (after fit, load, add_items)."""
        with torch.no_grad():
            items = torch.arange(len(self.id_rows))
            representation, bias = self.network.items(items, self._tensors(torch))
        self._item_matrix = (representation.numpy(), bias.numpy())

    def _tensors(self, torch) -> dict:
        return {"id_rows": torch.from_numpy(self.id_rows), "content": torch.from_numpy(self.content)}

    # --- scoring -------------------------------------------------------------------------------
    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        events = [self._known_events(context) for context in contexts]
        profiles = profile_matrix(self.encoder, [dict(context.profile) for context in contexts])
        tokens = context_tokens(events, self.item_positions, int(self.params["max_events"]))
        with torch_session(self.seed, self.params["threads"]) as torch, torch.no_grad():
            hidden = self.network.readout(
                profile_bags(profiles), {name: torch.from_numpy(array) for name, array in tokens.items()},
                self._tensors(torch),
            ).numpy()
        representation, bias = self._item_matrix
        weights = self.history.get("prior_weights", NO_BACK_OFF)
        with torch_session(self.seed, self.params["threads"]) as torch:
            logits = torch.from_numpy(hidden @ representation.T + bias)
            # Back off to popularity as far as the validation users asked, with and without events.
            has_events = torch.from_numpy(tokens["lengths"] > 0)
            with_events = mix_with_prior(logits, self.item_log_prior, weights["with_events"])
            logits = torch.where(has_events[:, None], with_events,
                                 mix_with_prior(logits, self.item_log_prior, weights["no_events"]))
        return logits.numpy()

    def _known_events(self, context: Context) -> list[Event]:
        """The context's events on known items, plus the product in view as a last view."""
        events = list(context.events)
        if context.product_id and (not events or events[-1].item_id != context.product_id):
            events.append(Event(context.product_id, "view"))
        positions = self.item_positions([event.item_id for event in events]) if events else np.zeros(0)
        return [event for event, position in zip(events, positions) if position >= 0]

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        if self._known_events(context):
            return ["Suggested from what you looked at"] * len(item_positions)
        if context.profile:
            return ["What shoppers like you usually start with"] * len(item_positions)
        return ["What new shoppers usually start with"] * len(item_positions)

    # --- new products --------------------------------------------------------------------------
    def _add_items(self, new_items: pd.DataFrame) -> None:
        """Embed the new products' text with the fitted text model; they get no id embedding."""
        vectors = np.asarray(self.text_encoder.encode(items_text(new_items)), dtype=np.float32)
        self.content = np.vstack([self.content, vectors]).astype(np.float32)
        self.id_rows = np.concatenate([self.id_rows, np.zeros(len(new_items), dtype=np.int64)])
        self.item_counts = np.concatenate([self.item_counts, np.zeros(len(new_items))])
        # The prior a new product backs off to: no more likely than the least chosen known one.
        floor = np.full(len(new_items), self.item_log_prior.min(), dtype=np.float32)
        self.item_log_prior = np.concatenate([self.item_log_prior, floor])
        with torch_session(self.seed, self.params["threads"]) as torch:
            self._refresh_item_matrix(torch)

    # --- persistence ---------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        save_torch_state(directory / "behavior.pt", self.network)
        np.save(directory / "content.npy", self.content)
        np.save(directory / "id_rows.npy", self.id_rows)
        np.save(directory / "item_counts.npy", self.item_counts)
        np.save(directory / "item_log_prior.npy", self.item_log_prior)
        text_state, text_arrays = self.text_encoder.get_state()
        np.savez(directory / "text_encoder.npz", **text_arrays)
        write_json(directory / "behavior.json", {"encoder": self.encoder.get_state(), "text_encoder": text_state,
                                                 "history": self.history})

    def _load_state(self, directory: Path) -> None:
        state = read_json(directory / "behavior.json")
        self.encoder = ProfileEncoder.from_state(state["encoder"])
        self.history = state["history"]
        self.content = np.load(directory / "content.npy", allow_pickle=False)
        self.id_rows = np.load(directory / "id_rows.npy", allow_pickle=False)
        self.item_counts = np.load(directory / "item_counts.npy", allow_pickle=False)
        prior_path = directory / "item_log_prior.npy"
        # Artifacts written before the back-off have no prior (and no prior weights: none is used).
        self.item_log_prior = (np.load(prior_path, allow_pickle=False) if prior_path.exists()
                               else log_prior(self.item_counts))
        self.text_encoder = self._load_text_encoder(directory, state)
        with torch_session(self.seed, self.params["threads"]) as torch:
            self.network = self._build_network(torch)
            load_torch_state(directory / "behavior.pt", self.network)
            self.network.eval()
            self._refresh_item_matrix(torch)

    def _load_text_encoder(self, directory: Path, state: dict):
        if "text_encoder" in state:
            with np.load(directory / "text_encoder.npz", allow_pickle=False) as arrays:
                return encoder_from_state(state["text_encoder"], dict(arrays), device=self.params["text_model_device"],
                                          threads=self.params["text_model_threads"])
        # Artifacts written before behavior used the shared encoders of strategies/text.py.
        if read_json(directory / "text_model.json")["kind"] == "minilm":
            return SentenceEncoder(model=self.params["text_model"], device=self.params["text_model_device"],
                                   threads=self.params["text_model_threads"])
        encoder = self._make_text_encoder(0)
        options = {"analyzer": encoder.analyzer, "ngram_range": encoder.ngram_range, "dim": encoder.dim,
                   "max_features": encoder.max_features, "seed": encoder.seed}
        with np.load(directory / "tfidf.npz", allow_pickle=False) as arrays:
            legacy = {"tfidf_terms": arrays["vocabulary"], "tfidf_idf": arrays["idf"],
                      "tfidf_components": arrays["components"]}
        return TfidfEncoder.from_state(options, legacy)
