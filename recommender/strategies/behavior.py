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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import EVENT_TYPES, INTERACTION_COLUMNS, Dataset
from ..data.features import ProfileEncoder
from .base import Context, Event, Strategy
from .torch_support import (
    TrainingBudget,
    copy_state,
    load_torch_state,
    profile_bags,
    profile_matrix,
    proposal_distribution,
    read_json,
    require_torch,
    save_torch_state,
    torch_session,
    user_profiles_frame,
    write_json,
)

# Upper edges (seconds) of the dwell buckets; bucket 0 means "unknown".
DWELL_EDGES = np.array([5.0, 30.0, 120.0, 600.0])
N_DWELL_BUCKETS = len(DWELL_EDGES) + 2
TEXT_ENCODERS = ("tfidf", "minilm")
logger = logging.getLogger(__name__)


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
        # One thread: on a shared 2-core machine a second OpenMP thread spin-waits for a core.
        "threads": 1,
    }

    def __init__(self, **params):
        require_torch()
        super().__init__(**params)
        if self.params["text_encoder"] not in TEXT_ENCODERS:
            raise ValueError(f"behavior: text_encoder must be one of {TEXT_ENCODERS}, got {self.params['text_encoder']!r}")
        self.network = None
        self.encoder: ProfileEncoder | None = None
        self.text_model: _TextVectors | None = None
        self.content = np.zeros((0, 0), dtype=np.float32)
        self.id_rows = np.zeros(0, dtype=np.int64)
        self.item_counts = np.zeros(0, dtype=np.float64)
        self.history = {}
        self._item_matrix = None

    # --- training ------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        params = self.params
        texts = dataset.item_text()
        self.text_model, self.content = _TextVectors.fit(texts, params, self.seed)
        mask = (dataset.event_weights() > 0) & (dataset.item_codes >= 0)
        self.item_counts = np.bincount(dataset.item_codes[mask], minlength=dataset.n_items).astype(np.float64)
        # Id row 0 is the shared zero row of items without training interactions.
        self.id_rows = np.zeros(dataset.n_items, dtype=np.int64)
        warm = np.flatnonzero(self.item_counts > 0)
        self.id_rows[warm] = np.arange(1, len(warm) + 1)
        self.encoder = ProfileEncoder().fit(dataset.users)
        sequences = _first_events(dataset, mask, int(params["max_events"]))
        profiles = profile_matrix(self.encoder, user_profiles_frame(dataset).iloc[sequences["users"]])
        with torch_session(self.seed, params["threads"]) as torch:
            self.network = self._build_network(torch)
            rng = np.random.default_rng(self.seed)
            trainer = _Trainer(self, torch, rng, sequences, profiles)
            self.history = trainer.run()
            self.network.eval()
            self._refresh_item_matrix(torch)

    def _build_network(self, torch):
        params = self.params
        return _make_network(
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
        tokens = _context_tokens(events, self.item_positions, int(self.params["max_events"]))
        with torch_session(self.seed, self.params["threads"]) as torch, torch.no_grad():
            hidden = self.network.readout(
                profile_bags(profiles), {name: torch.from_numpy(array) for name, array in tokens.items()},
                self._tensors(torch),
            ).numpy()
        representation, bias = self._item_matrix
        return hidden @ representation.T + bias

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
        vectors = self.text_model.transform(_item_text(new_items))
        self.content = np.vstack([self.content, vectors]).astype(np.float32)
        self.id_rows = np.concatenate([self.id_rows, np.zeros(len(new_items), dtype=np.int64)])
        self.item_counts = np.concatenate([self.item_counts, np.zeros(len(new_items))])
        with torch_session(self.seed, self.params["threads"]) as torch:
            self._refresh_item_matrix(torch)

    # --- persistence ---------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        save_torch_state(directory / "behavior.pt", self.network)
        np.save(directory / "content.npy", self.content)
        np.save(directory / "id_rows.npy", self.id_rows)
        np.save(directory / "item_counts.npy", self.item_counts)
        self.text_model.save(directory)
        write_json(directory / "behavior.json", {"encoder": self.encoder.get_state(), "history": self.history})

    def _load_state(self, directory: Path) -> None:
        state = read_json(directory / "behavior.json")
        self.encoder = ProfileEncoder.from_state(state["encoder"])
        self.history = state["history"]
        self.content = np.load(directory / "content.npy", allow_pickle=False)
        self.id_rows = np.load(directory / "id_rows.npy", allow_pickle=False)
        self.item_counts = np.load(directory / "item_counts.npy", allow_pickle=False)
        self.text_model = _TextVectors.load(directory, self.params)
        with torch_session(self.seed, self.params["threads"]) as torch:
            self.network = self._build_network(torch)
            load_torch_state(directory / "behavior.pt", self.network)
            self.network.eval()
            self._refresh_item_matrix(torch)


# --- sequences ------------------------------------------------------------------------------------
def dwell_buckets(dwell_seconds: np.ndarray) -> np.ndarray:
    """Bucket of each dwell time: 0 unknown, then <5 s, <30 s, <2 min, <10 min, longer."""
    dwell = np.asarray(dwell_seconds, dtype=np.float64)
    buckets = np.searchsorted(DWELL_EDGES, np.nan_to_num(dwell, nan=0.0), side="right") + 1
    return np.where(np.isnan(dwell), 0, buckets).astype(np.int64)


def event_codes(events) -> np.ndarray:
    """Index of each event type in ``EVENT_TYPES`` (unknown types: len(EVENT_TYPES))."""
    codes = pd.Categorical(np.asarray(events, dtype=object), categories=EVENT_TYPES).codes
    return np.where(codes < 0, len(EVENT_TYPES), codes).astype(np.int64)


def _first_events(dataset: Dataset, mask: np.ndarray, max_events: int) -> dict[str, np.ndarray]:
    """Each active user's first ``max_events`` masked events as padded (users, N) arrays.

    Item positions are shifted by one so that 0 is padding.
    """
    rows = np.flatnonzero(mask)
    users = dataset.user_codes[rows]
    order = np.argsort(users, kind="stable")  # interactions are already in time order
    rows, users = rows[order], users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    lengths = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, lengths)
    keep = rank < max_events
    rows, users, rank = rows[keep], users[keep], rank[keep]
    active_users, user_row = np.unique(users, return_inverse=True)
    shape = (len(active_users), max_events)
    items = np.zeros(shape, dtype=np.int64)
    events = np.zeros(shape, dtype=np.int64)
    dwell = np.zeros(shape, dtype=np.int64)
    items[user_row, rank] = dataset.item_codes[rows] + 1
    events[user_row, rank] = event_codes(dataset.interactions["event"].to_numpy()[rows])
    dwell[user_row, rank] = dwell_buckets(dataset.interactions["dwell_seconds"].to_numpy()[rows])
    return {"users": active_users, "items": items, "events": events, "dwell": dwell,
            "lengths": np.minimum(lengths, max_events)}


def _context_tokens(events_per_context: list[list[Event]], item_positions, max_events: int) -> dict[str, np.ndarray]:
    """Padded token arrays of serving contexts (their last ``max_events`` known events)."""
    n_contexts = len(events_per_context)
    width = max(1, max((min(len(events), max_events) for events in events_per_context), default=0))
    items = np.zeros((n_contexts, width), dtype=np.int64)
    event_types = np.zeros((n_contexts, width), dtype=np.int64)
    dwell = np.zeros((n_contexts, width), dtype=np.int64)
    lengths = np.zeros(n_contexts, dtype=np.int64)
    for row, events in enumerate(events_per_context):
        events = events[-max_events:]
        if not events:
            continue
        count = len(events)
        items[row, :count] = item_positions([event.item_id for event in events]) + 1
        event_types[row, :count] = event_codes([event.event for event in events])
        dwell[row, :count] = dwell_buckets([np.nan if event.dwell_seconds is None else event.dwell_seconds for event in events])
        lengths[row] = count
    return {"items": items, "events": event_types, "dwell": dwell, "lengths": lengths}


# --- text -----------------------------------------------------------------------------------------
def _item_text(items: pd.DataFrame) -> list[str]:
    frame = items.copy()
    frame.index = frame.index.astype(str).rename("item_id")
    empty = pd.DataFrame(columns=list(INTERACTION_COLUMNS))
    return Dataset(users=pd.DataFrame({"user_id": []}), items=frame, interactions=empty).item_text()


class _TextVectors:
    """Item text → dense unit vectors: TF-IDF + truncated SVD, or MiniLM embeddings.

    The TF-IDF state is kept as plain arrays (vocabulary, idf, SVD components) so new products
    are embedded exactly as the training catalogue was, and nothing is pickled.
    """

    def __init__(self, kind: str, params: dict, vocabulary=None, idf=None, components=None):
        self.kind = kind
        self.params = params
        self.vocabulary = vocabulary
        self.idf = idf
        self.components = components

    @classmethod
    def fit(cls, texts: list[str], params: dict, seed: int) -> tuple["_TextVectors", np.ndarray]:
        """The fitted text model and the vectors of ``texts`` (TF-IDF counted once, not twice)."""
        if params["text_encoder"] == "minilm":
            if _minilm_embedder() is not None:
                model = cls("minilm", params)
                return model, model.transform(texts)
            logger.warning("behavior: the sentence model is not available; using TF-IDF item vectors")
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(
            analyzer=params["tfidf_analyzer"], ngram_range=(3, 5) if params["tfidf_analyzer"] != "word" else (1, 2),
            min_df=2 if len(texts) >= 50 else 1, max_features=50_000, sublinear_tf=True, dtype=np.float32,
        )
        matrix = vectorizer.fit_transform(texts)
        n_components = max(1, min(int(params["content_dim"]), matrix.shape[1] - 1, matrix.shape[0] - 1))
        svd = TruncatedSVD(n_components=n_components, random_state=seed).fit(matrix)
        vocabulary = np.array(sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get), dtype=str)
        model = cls("tfidf", params, vocabulary, vectorizer.idf_.astype(np.float32), svd.components_.astype(np.float32))
        return model, model._unit_rows(np.asarray(matrix @ model.components.T, dtype=np.float32))

    def transform(self, texts: list[str]) -> np.ndarray:
        if self.kind == "minilm":
            vectors = np.asarray(_minilm_embedder()(texts), dtype=np.float32)
        else:
            vectors = np.asarray(self._tfidf(texts) @ self.components.T, dtype=np.float32)
        return self._unit_rows(vectors)

    @staticmethod
    def _unit_rows(vectors: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)

    def _tfidf(self, texts: list[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(
            analyzer=self.params["tfidf_analyzer"],
            ngram_range=(3, 5) if self.params["tfidf_analyzer"] != "word" else (1, 2),
            vocabulary={term: index for index, term in enumerate(self.vocabulary.tolist())},
            sublinear_tf=True, dtype=np.float32,
        )
        vectorizer.idf_ = self.idf
        return vectorizer.transform(texts)

    def save(self, directory: Path) -> None:
        write_json(directory / "text_model.json", {"kind": self.kind})
        if self.kind == "tfidf":
            np.savez(directory / "tfidf.npz", vocabulary=self.vocabulary, idf=self.idf, components=self.components)

    @classmethod
    def load(cls, directory: Path, params: dict) -> "_TextVectors":
        kind = read_json(directory / "text_model.json")["kind"]
        if kind == "minilm":
            return cls("minilm", params)
        arrays = np.load(directory / "tfidf.npz", allow_pickle=False)
        return cls("tfidf", params, arrays["vocabulary"], arrays["idf"], arrays["components"])


def _minilm_embedder():
    """The shared sentence encoder's ``encode`` (cached by text), or None if it cannot load."""
    from .text import SentenceEncoder, TextModelUnavailable

    encoder = SentenceEncoder()
    try:
        encoder.check_available()
    except TextModelUnavailable:
        return None
    return encoder.encode


# --- training -------------------------------------------------------------------------------------
class _Trainer:
    """Length-bucketed mini-batches, sampled softmax, early stopping on held-out users."""

    def __init__(self, strategy: BehaviorStrategy, torch, rng, sequences, profiles):
        self.strategy, self.torch, self.rng = strategy, torch, rng
        self.params = strategy.params
        self.network = strategy.network
        self.sequences, self.profiles = sequences, profiles
        self.proposal = proposal_distribution(strategy.item_counts)
        self.items = strategy._tensors(torch)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=float(self.params["learning_rate"]))

    def run(self) -> dict:
        params = self.params
        n_users = len(self.sequences["users"])
        order = self.rng.permutation(n_users)
        n_validation = min(int(n_users * float(params["validation_share"])), int(params["max_validation_users"]))
        validation_rows = order[:n_validation] if n_validation >= 10 else order[:0]
        train_rows = order[len(validation_rows):]
        validation_negatives = self._negatives()
        best_score, best_state, best_epoch, scores = -np.inf, None, 0, []
        budget = TrainingBudget(params["max_seconds"])
        epochs_run = 0
        for epoch in range(int(params["epochs"])):
            budget.start_epoch()
            self.network.train()
            for batch in self._batches(train_rows):
                self._step(batch)
                if budget.exhausted():
                    break
            epochs_run += 1
            if len(validation_rows):
                score = self._validate(validation_rows, validation_negatives)
                scores.append(score)
                if score > best_score:
                    best_score, best_state, best_epoch = score, copy_state(self.network), epoch
                elif epoch - best_epoch >= int(params["patience"]):
                    break
            if budget.end_epoch(more_epochs=epoch + 1 < int(params["epochs"])):
                logger.info("behavior: stopped after %d epochs by max_seconds=%g", epochs_run, budget.seconds)
                break
        if best_state is not None:
            self.network.load_state_dict(best_state)
        return {"validation_auc": scores, "best_epoch": best_epoch, "epochs_run": epochs_run,
                "stopped_by_budget": budget.stopped, "seconds": round(budget.elapsed, 3)}

    def _batches(self, rows: np.ndarray) -> list[np.ndarray]:
        """Batches of users of similar length (less padding), in a shuffled order."""
        lengths = self.sequences["lengths"][rows]
        by_length = rows[np.lexsort((self.rng.random(len(rows)), lengths))]
        batches = [by_length[start:start + int(self.params["batch_size"])]
                   for start in range(0, len(by_length), int(self.params["batch_size"]))]
        return [batches[index] for index in self.rng.permutation(len(batches))]

    def _inputs(self, rows: np.ndarray, training: bool):
        """Token tensors (input = all but the last event) and next-item targets."""
        torch = self.torch
        width = int(self.sequences["lengths"][rows].max())
        items = self.sequences["items"][rows, :width]
        profiles = self.profiles[rows]
        if training:
            hidden = self.rng.random(len(rows)) < float(self.params["profile_dropout"])
            coo = profiles.tocoo()
            keep = ~hidden[coo.row] | (coo.col == profiles.shape[1] - 1)
            profiles = type(profiles)((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=profiles.shape)
        tokens = {
            "items": torch.from_numpy(items[:, : width - 1].copy()),
            "events": torch.from_numpy(self.sequences["events"][rows, : width - 1].copy()),
            "dwell": torch.from_numpy(self.sequences["dwell"][rows, : width - 1].copy()),
        }
        # Position t (0 = profile token) predicts event t + 1; padding targets are 0.
        return profile_bags(profiles.tocsr()), tokens, torch.from_numpy(items.copy())

    def _negatives(self):
        torch = self.torch
        n_items, n_negatives = len(self.proposal), int(self.params["negatives"])
        if n_items <= 2 * n_negatives:
            return torch.arange(n_items), torch.zeros(n_items), True
        items = self.rng.choice(n_items, size=n_negatives, replace=True, p=self.proposal)
        return torch.from_numpy(items), torch.from_numpy(np.log(n_negatives * self.proposal[items]).astype(np.float32)), False

    def _target_log_probabilities(self, rows, training: bool, negatives):
        torch = self.torch
        profile, tokens, targets = self._inputs(rows, training)
        id_keep = None
        if training and float(self.params["id_dropout"]) > 0:
            id_keep = torch.from_numpy((self.rng.random(self.network.n_ids) >= float(self.params["id_dropout"])).astype(np.float32))
        hidden = self.network.sequence(profile, tokens, self.items, id_keep)
        valid = targets > 0
        hidden, targets = hidden[valid], targets[valid] - 1
        negative_items, log_q, exact = negatives
        candidates = torch.unique(torch.cat([negative_items, targets]))
        representation, bias = self.network.items(candidates, self.items, id_keep)
        target_column = torch.searchsorted(candidates, targets)
        negative_column = torch.searchsorted(candidates, negative_items)
        negative_logits = hidden @ representation[negative_column].T + bias[negative_column]
        if exact:
            return torch.log_softmax(negative_logits, dim=1)[torch.arange(len(targets)), targets], targets, hidden
        negative_logits = (negative_logits - log_q).masked_fill(negative_items[None, :] == targets[:, None], float("-inf"))
        positive = (hidden * representation[target_column]).sum(1) + bias[target_column]
        return positive - torch.logsumexp(torch.cat([positive[:, None], negative_logits], dim=1), dim=1), targets, hidden

    def _step(self, rows: np.ndarray) -> None:
        log_probabilities, _, _ = self._target_log_probabilities(rows, True, self._negatives())
        loss = -log_probabilities.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def _validate(self, rows: np.ndarray, negatives) -> float:
        """Sampled AUC of the true next item against fixed negatives."""
        torch = self.torch
        self.network.eval()
        with torch.no_grad():
            _, targets, hidden = self._target_log_probabilities(rows, False, negatives)
            items = torch.unique(torch.cat([negatives[0], targets]))
            representation, bias = self.network.items(items, self.items)
            positive = (hidden * representation[torch.searchsorted(items, targets)]).sum(1) + bias[torch.searchsorted(items, targets)]
            column = torch.searchsorted(items, negatives[0])
            negative = hidden @ representation[column].T + bias[column]
            other = negatives[0][None, :] != targets[:, None]
            wins = ((positive[:, None] > negative) & other).sum()
        return float(wins) / max(float(other.sum()), 1.0)


def _make_network(torch, n_ids, n_profile, content_dim, model_dim, heads, layers, feedforward_dim, dropout, max_positions):
    """Build the Transformer (torch is imported lazily, so the module imports without it)."""
    nn = torch.nn

    class BehaviorTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.n_ids = n_ids
            self.id_embedding = nn.Embedding(n_ids, model_dim, padding_idx=0)
            nn.init.normal_(self.id_embedding.weight, std=0.02)
            with torch.no_grad():
                self.id_embedding.weight[0].zero_()
            self.id_bias = nn.Embedding(n_ids, 1, padding_idx=0)
            nn.init.zeros_(self.id_bias.weight)
            self.cold_bias = nn.Parameter(torch.zeros(1))
            self.content_projection = nn.Linear(content_dim, model_dim, bias=False)
            self.event_embedding = nn.Embedding(len(EVENT_TYPES) + 1, model_dim)
            self.dwell_embedding = nn.Embedding(N_DWELL_BUCKETS, model_dim)
            self.position_embedding = nn.Embedding(max_positions, model_dim)
            self.profile_projection = nn.EmbeddingBag(n_profile, model_dim, mode="sum")
            for embedding in (self.event_embedding, self.dwell_embedding, self.position_embedding, self.profile_projection):
                nn.init.normal_(embedding.weight, std=0.02)
            layer = nn.TransformerEncoderLayer(model_dim, heads, feedforward_dim, dropout, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.final_norm = nn.LayerNorm(model_dim)

        def items(self, items, tables, id_keep=None):
            """Representation (tied input/output) and bias of item positions ``items``."""
            id_rows = tables["id_rows"][items]
            representation = self.id_embedding(id_rows)
            if id_keep is not None:
                representation = representation * id_keep[id_rows][:, None]
            representation = representation + self.content_projection(tables["content"][items])
            bias = torch.where(id_rows > 0, self.id_bias(id_rows).squeeze(1), self.cold_bias)
            return representation, bias

        def sequence(self, profile, tokens, tables, id_keep=None):
            """Hidden state at every position: the profile token, then each event."""
            items = tokens["items"]
            n_rows, width = items.shape
            item_positions = (items - 1).clamp(min=0)
            representation, _ = self.items(item_positions.reshape(-1), tables, id_keep)
            events = (representation.reshape(n_rows, width, representation.shape[-1]) * (items > 0)[..., None]
                      + self.event_embedding(tokens["events"]) + self.dwell_embedding(tokens["dwell"]))
            sequence = torch.cat([self.profile_projection(*profile)[:, None, :], events], dim=1)
            sequence = sequence + self.position_embedding(torch.arange(width + 1))[None]
            causal = nn.Transformer.generate_square_subsequent_mask(width + 1)
            return self.final_norm(self.transformer(sequence, mask=causal, is_causal=True))

        def readout(self, profile, tokens, tables):
            """Hidden state after each context's last known event (the profile token if none)."""
            hidden = self.sequence(profile, tokens, tables)
            return hidden[torch.arange(hidden.shape[0]), tokens["lengths"]]

    return BehaviorTransformer()
