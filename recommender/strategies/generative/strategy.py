"""``generative``: a conditional generative model of a user's interactions given the profile.

Two selectable models (``params["model"]``):

- ``"cvae"`` (default): a conditional VAE in the style of Mult-VAE (Liang et al., 2018).
  The encoder q(z | x, c) reads the user's interaction vector x (L2-normalised, with input
  dropout) and the one-hot profile c; the decoder p(x | z, c) gives a multinomial over items.
  The KL term is annealed from 0 to ``beta_max``.
- ``"cfgan"``: a CFGAN-style conditional GAN (Chae et al., 2018). The generator G(c, x̃, noise)
  outputs a purchase vector; the discriminator D(x ⊙ mask, c) compares it with the real one,
  where the mask keeps the user's items plus sampled negatives (partial masking), and a
  zero-reconstruction penalty pushes G's output on the sampled negatives to 0.

Both are trained on x̃ = a dropped-out copy of the user's history, so the same network scores a
brand-new visitor from the profile alone (empty x̃) and a visitor with a few revealed events.

The popularity prior is part of the model, so that a new visitor is never served worse than by
plain popularity: the output biases start at the log of each item's training share (the untrained
network ranks by popularity), a share of each batch is trained with nothing revealed, the best
epoch (the untrained start included) is picked by NDCG@10 over the vocabulary on validation
users, and those users also choose how far the scores back off to popularity
(``history["prior_weights"]``, one weight for visitors without events and one with them).

Only items with training interactions get an output unit (the "vocabulary"); other items
(new products) score below every vocabulary item: this model knows nothing about them.

``augment`` synthesises virtual users for sparse segments (profiles drawn from the segment's
real users, interactions drawn from the decoder) to train other strategies.

The networks are in ``network.py``, their training loop in ``trainer.py`` and the virtual
users in ``augmentation.py``; this module is the strategy contract around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...data.dataset import Dataset
from ...data.features import ProfileEncoder, describe_segment
from ..base import Context, Strategy
from ..context import context_rows
from ..torch_support import (
    csr_bags,
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
from .augmentation import augment_dataset
from .network import MODELS, build_network, normalise_rows
from .trainer import NO_BACK_OFF, GenerativeTrainer, split_rows


class GenerativeStrategy(Strategy):
    """Conditional VAE (or CFGAN) over interaction vectors, conditioned on the profile."""

    key = "generative"
    label = "Predicted for shoppers like you"
    default_params = {
        "model": "cvae",
        "latent_dim": 32,
        "hidden_dim": 64,
        "noise_dim": 16,
        # Share of a training user's items hidden from the encoder: a number, or "uniform" for
        # a rate drawn per user from U(0, 1), so that short prefixes (a new visitor's first
        # events) and empty inputs are in-sample too.
        "input_dropout": "uniform",
        # Share of training users (per batch) whose items are all hidden from the encoder, so the
        # zero-event prediction is learned from every kind of user, heavy ones too.
        "empty_input_share": 0.2,
        # Share of training users whose profile is hidden, so anonymous visitors are in-sample.
        "profile_dropout": 0.25,
        "epochs": 30,
        # Epochs without a better validation score before stopping (counted after the anneal).
        "patience": 3,
        # Large batches: a step's cost is mostly per-step overhead (optimizer over every item
        # row), so fewer, larger steps train faster on a 2-core CPU.
        "batch_size": 512,
        "learning_rate": 5e-3,
        "beta_max": 0.2,
        "anneal_epochs": 5,
        # Shared negatives per batch for the sampled softmax (and CFGAN's partial masking);
        # vocabularies up to twice this size use the exact full softmax instead.
        "negatives": 512,
        "zero_reconstruction": 0.1,
        "validation_share": 0.1,
        # A fixed sample of held-out users is enough to pick the best epoch and stop early.
        "max_validation_users": 500,
        # Wall-clock budget of training (seconds; None = none): training stops after the step
        # that crosses it, or before an epoch predicted to cross it, keeping the best epoch.
        # Only a fit that hits the budget can depend on the machine's speed (see ``history``).
        "max_seconds": 20.0,
        # Output units only for the most chosen items (None: every item with a training
        # interaction); the rest rank below the vocabulary. Each unit costs every training
        # step, and on a validation split of Book-Crossing's training users (25k chosen items,
        # most chosen once) the full tail scored half the NDCG@10 of a 2–5k vocabulary.
        "max_vocabulary": 4096,
        "positive_threshold": None,
        "segment_keys": ("gender", "age_band"),
        # One thread: the ops are small, and on a shared 2-core machine a second OpenMP thread
        # spin-waits for a core (measured 10× slower per step under load).
        "threads": 1,
        # Weight of each event type (None: ``DEFAULT_EVENT_WEIGHTS``); an event weighing 0 is
        # not a choice of the item. Training passes the shop's ``EVENT_WEIGHTS``.
        "event_weights": None,
    }

    def __init__(self, **params):
        require_torch()
        super().__init__(**params)
        dropout = self.params["input_dropout"]
        if dropout != "uniform" and not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ValueError(f"generative: input_dropout must be 'uniform' or a number in [0, 1), got {dropout!r}")
        if self.params["model"] not in MODELS:
            raise ValueError(f"generative: model must be one of {MODELS}, got {self.params['model']!r}")
        self.network = None
        self.encoder: ProfileEncoder | None = None
        self.vocabulary_positions = np.zeros(0, dtype=np.int64)
        self.vocabulary_counts = np.zeros(0, dtype=np.float64)
        self.history = {}

    # --- training ------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        params = self.params
        interacted = self._training_mask(dataset)
        counts = np.bincount(dataset.item_codes[interacted], minlength=dataset.n_items)
        self.vocabulary_positions = _vocabulary(counts, params["max_vocabulary"])
        interacted &= np.isin(dataset.item_codes, self.vocabulary_positions)
        self.vocabulary_counts = counts[self.vocabulary_positions].astype(np.float64)
        self.encoder = ProfileEncoder().fit(dataset.users)
        history = self._history_matrix(dataset, interacted)
        active = np.flatnonzero(history.getnnz(axis=1) > 0)
        profiles = profile_matrix(self.encoder, user_profiles_frame(dataset).iloc[active])
        history = history[active]
        with torch_session(self.seed, params["threads"]) as torch:
            self.network = self._build_network(item_log_prior=log_prior(self.vocabulary_counts))
            rng = np.random.default_rng(self.seed)
            train_rows, validation_rows = split_rows(len(active), params, rng)
            trainer = GenerativeTrainer(self.network, params, torch, rng, history, profiles, self.vocabulary_counts)
            self.history = trainer.run(train_rows, validation_rows)
        self.network.eval()

    def _training_mask(self, dataset: Dataset) -> np.ndarray:
        """Interactions that count as the user having chosen the item (never an impression)."""
        mask = (dataset.event_weights(self.params["event_weights"]) > 0) & context_rows(dataset)
        if self.params["positive_threshold"] is not None:
            mask &= dataset.is_positive(self.params["positive_threshold"])
        return mask & (dataset.item_codes >= 0)

    def _history_matrix(self, dataset: Dataset, mask: np.ndarray) -> sp.csr_matrix:
        """Binary users × vocabulary matrix of the masked interactions."""
        column_of_item = np.full(dataset.n_items, -1, dtype=np.int64)
        column_of_item[self.vocabulary_positions] = np.arange(len(self.vocabulary_positions))
        matrix = sp.csr_matrix(
            (np.ones(int(mask.sum()), dtype=np.float32), (dataset.user_codes[mask], column_of_item[dataset.item_codes[mask]])),
            shape=(dataset.n_users, len(self.vocabulary_positions)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def _build_network(self, item_log_prior: np.ndarray | None = None):
        params = self.params
        return build_network(
            params["model"],
            n_items=len(self.vocabulary_positions),
            n_profile=self.encoder.n_features + 1,
            hidden_dim=int(params["hidden_dim"]),
            latent_dim=int(params["latent_dim"]),
            noise_dim=int(params["noise_dim"]),
            item_log_prior=item_log_prior,
        )

    # --- scoring -------------------------------------------------------------------------------
    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        vocabulary_scores = self._vocabulary_scores(contexts)
        scores = np.empty((len(contexts), self.n_items), dtype=np.float32)
        # Items without training interactions rank below every item the model knows.
        scores[:] = (vocabulary_scores.min(axis=1, keepdims=True) - 1.0) if vocabulary_scores.size else 0.0
        scores[:, self.vocabulary_positions] = vocabulary_scores
        return scores

    def _vocabulary_scores(self, contexts: Sequence[Context]) -> np.ndarray:
        profiles = profile_matrix(self.encoder, [dict(context.profile) for context in contexts])
        history = self._context_history(contexts)
        weights = self.history.get("prior_weights", NO_BACK_OFF)
        with torch_session(self.seed, self.params["threads"]) as torch, torch.no_grad():
            logits = self.network.score(profile_bags(profiles), csr_bags(normalise_rows(history)))
            # Back off to popularity as far as the validation users asked, with and without events.
            has_events = torch.from_numpy(history.getnnz(axis=1) > 0)
            prior = log_prior(self.vocabulary_counts)
            logits = torch.where(has_events[:, None], mix_with_prior(logits, prior, weights["with_events"]),
                                 mix_with_prior(logits, prior, weights["no_events"]))
        return logits.numpy()

    def _context_history(self, contexts: Sequence[Context]) -> sp.csr_matrix:
        """Binary contexts × vocabulary matrix of the revealed events (unknown ids ignored)."""
        column_of_position = np.full(self.n_items, -1, dtype=np.int64)
        column_of_position[self.vocabulary_positions] = np.arange(len(self.vocabulary_positions))
        per_context = [context.event_item_ids for context in contexts]
        item_ids = [item_id for ids in per_context for item_id in ids]
        rows = np.repeat(np.arange(len(contexts)), [len(ids) for ids in per_context])
        positions = self.item_positions(item_ids) if item_ids else np.zeros(0, dtype=np.int64)
        columns = np.where(positions >= 0, column_of_position[np.maximum(positions, 0)], -1)
        known = columns >= 0
        matrix = sp.csr_matrix(
            (np.ones(int(known.sum()), dtype=np.float32), (rows[known], columns[known])),
            shape=(len(contexts), len(self.vocabulary_positions)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        known_events = bool(len(context.events)) and (self.item_positions(context.event_item_ids) >= 0).any()
        tokens = self.encoder.tokens(dict(context.profile))
        keys = tuple(self.params["segment_keys"])
        if known_events:
            reason = "Predicted from what you looked at and shoppers like you"
        elif any(tokens.get(key) for key in keys):
            reason = f"Predicted for {describe_segment(tokens, keys)}"
        else:
            reason = "Predicted for a typical shopper"
        return [reason] * len(item_positions)

    # --- persistence ---------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        save_torch_state(directory / "generative.pt", self.network)
        np.save(directory / "vocabulary_positions.npy", self.vocabulary_positions)
        np.save(directory / "vocabulary_counts.npy", self.vocabulary_counts)
        write_json(directory / "generative.json", {"encoder": self.encoder.get_state(), "history": self.history})

    def _load_state(self, directory: Path) -> None:
        state = read_json(directory / "generative.json")
        self.encoder = ProfileEncoder.from_state(state["encoder"])
        self.history = state["history"]
        self.vocabulary_positions = np.load(directory / "vocabulary_positions.npy", allow_pickle=False)
        self.vocabulary_counts = np.load(directory / "vocabulary_counts.npy", allow_pickle=False)
        self.network = self._build_network()
        load_torch_state(directory / "generative.pt", self.network)
        self.network.eval()

    def _add_items(self, new_items: pd.DataFrame) -> None:
        """New products have no output unit; ``_score_batch`` ranks them after known ones."""

    # --- augmentation --------------------------------------------------------------------------
    def augment(
        self,
        dataset: Dataset,
        segments: Sequence[Mapping[str, str] | tuple] | None = None,
        n_per_segment: int | None = None,
        segment_keys: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> Dataset:
        """Return ``dataset`` plus virtual users synthesised for sparse segments.

        Parameters
        ----------
        dataset
            The training data; the strategy is fitted on it first if it is not fitted yet.
        segments
            Segments to grow, as dicts ``{key: value}`` or tuples in ``segment_keys`` order
            (values as ``ProfileEncoder.tokens`` gives them, e.g. ``("f", "25–34")``). ``None``
            picks the sparse ones: segments with fewer active users than the median segment.
        n_per_segment
            Virtual users per segment; ``None`` tops each segment up to the median size.
        segment_keys
            Profile token groups defining a segment (default ``params["segment_keys"]``).

        Returns
        -------
        Dataset
            The same items, the real users and interactions, plus users ``virtual-<n>`` whose
            profiles are copied from real users of the segment and whose interactions are
            sampled from the model's p(x | z, c) with z ~ q(z | c), with event types and values drawn from the
            segment's real interactions. ``meta["virtual_users"]`` counts them.
        """
        if not self.fitted:
            self.fit(dataset)
        keys = tuple(segment_keys or self.params["segment_keys"])
        if segment_keys is None:
            # Data without, say, gender (Book-Crossing) is segmented by what it has.
            keys = tuple(key for key in keys if key in self.encoder.groups_) or keys
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return augment_dataset(self, dataset, segments, n_per_segment, keys, rng)


def _vocabulary(counts: np.ndarray, max_vocabulary: int | None) -> np.ndarray:
    """Item positions with training interactions, the ``max_vocabulary`` most chosen if set (sorted)."""
    chosen = np.flatnonzero(counts > 0)
    if max_vocabulary is not None and len(chosen) > int(max_vocabulary):
        order = np.lexsort((chosen, -counts[chosen]))  # ties by position, for determinism
        chosen = np.sort(chosen[order[: int(max_vocabulary)]])
    return chosen.astype(np.int64)
