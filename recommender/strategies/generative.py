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

Only items with training interactions get an output unit (the "vocabulary"); other items
(new products) score below every vocabulary item: this model knows nothing about them.

``augment`` synthesises virtual users for sparse segments (profiles drawn from the segment's
real users, interactions drawn from the decoder) to train other strategies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..data.features import ProfileEncoder, describe_segment, segment_of
from .base import Context, Strategy
from .torch_support import (
    TrainingBudget,
    copy_state,
    csr_bags,
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

MODELS = ("cvae", "cfgan")
VIRTUAL_PREFIX = "virtual-"


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
            self.network = self._build_network()
            rng = np.random.default_rng(self.seed)
            train_rows, validation_rows = _split_rows(len(active), params, rng)
            trainer = _Trainer(self, torch, rng, history, profiles)
            self.history = trainer.run(train_rows, validation_rows)
        self.network.eval()

    def _training_mask(self, dataset: Dataset) -> np.ndarray:
        """Interactions that count as the user having chosen the item."""
        mask = dataset.event_weights() > 0
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

    def _build_network(self):
        params = self.params
        network_class = _ConditionalVAE if params["model"] == "cvae" else _ConditionalGAN
        return network_class(
            n_items=len(self.vocabulary_positions),
            n_profile=self.encoder.n_features + 1,
            hidden_dim=int(params["hidden_dim"]),
            latent_dim=int(params["latent_dim"]),
            noise_dim=int(params["noise_dim"]),
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
        with torch_session(self.seed, self.params["threads"]) as torch, torch.no_grad():
            logits = self.network.score(profile_bags(profiles), csr_bags(_normalise_rows(history)))
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
        users = user_profiles_frame(dataset)
        active_users = np.flatnonzero(np.bincount(dataset.user_codes, minlength=dataset.n_users) > 0)
        user_segments = pd.Series(
            [segment_of(tokens, keys) for tokens in self.encoder.tokens_frame(users.iloc[active_users])],
            index=active_users,
        )
        user_segments = user_segments[user_segments.map(lambda segment: None not in segment)]
        sizes = user_segments.value_counts()
        if sizes.empty:
            return dataset
        wanted = self._wanted_segments(sizes, segments, keys, n_per_segment)
        virtual_users, virtual_interactions, counter = [], [], 0
        events_per_user = np.bincount(dataset.user_codes, minlength=dataset.n_users)
        for segment, n_virtual in wanted.items():
            members = user_segments.index[user_segments == segment].to_numpy()
            if n_virtual <= 0 or members.size == 0:
                continue
            templates = rng.choice(members, size=n_virtual, replace=True)
            lengths = np.maximum(events_per_user[rng.choice(members, size=n_virtual, replace=True)], 1)
            profiles_frame = users.iloc[templates].copy()
            ids = [f"{VIRTUAL_PREFIX}{counter + offset:06d}" for offset in range(n_virtual)]
            counter += n_virtual
            profiles_frame.index = pd.Index(ids, name="user_id")
            virtual_users.append(profiles_frame)
            virtual_interactions.append(self._sample_interactions(dataset, profiles_frame, members, lengths, rng))
        if not virtual_users:
            return dataset
        return _with_virtual_users(dataset, pd.concat(virtual_users), pd.concat(virtual_interactions, ignore_index=True))

    def _wanted_segments(self, sizes: pd.Series, segments, keys, n_per_segment) -> dict[tuple, int]:
        """Map segment → number of virtual users to create."""
        target = int(np.median(sizes.to_numpy()))
        if segments is None:
            chosen = [segment for segment, size in sizes.items() if size < target]
        else:
            chosen = [tuple(s.get(key) for key in keys) if isinstance(s, Mapping) else tuple(s) for s in segments]
            unknown = [segment for segment in chosen if segment not in sizes.index]
            if unknown:
                raise ValueError(f"augment: no active users in segments {unknown}; known: {list(sizes.index)[:20]}")
        return {
            segment: int(n_per_segment) if n_per_segment is not None else max(target - int(sizes[segment]), 0)
            for segment in chosen
        }

    def _sample_interactions(self, dataset, profiles_frame, members, lengths, rng) -> pd.DataFrame:
        """Draw each virtual user's items from p(x | c) without replacement (Gumbel top-k)."""
        profiles = profile_matrix(self.encoder, profiles_frame)
        with torch_session(int(rng.integers(2**31)), self.params["threads"]) as torch, torch.no_grad():
            log_probabilities = self.network.sample_log_probabilities(profile_bags(profiles)).numpy()
        lengths = np.minimum(lengths, log_probabilities.shape[1])
        keys = log_probabilities + rng.gumbel(size=log_probabilities.shape)
        order = np.argsort(-keys, axis=1)
        take = np.arange(order.shape[1])[None, :] < lengths[:, None]
        rows, ranks = np.nonzero(take)
        items = dataset.item_ids[self.vocabulary_positions[order[rows, ranks]]]
        # Event types, values and dwell come from the segment's real interactions.
        real = dataset.interactions[dataset.interactions["user_id"].isin(dataset.user_ids[members])]
        template_rows = real.iloc[rng.integers(len(real), size=len(rows))]
        timestamps = np.full(len(rows), np.nan)
        if dataset.interactions["timestamp"].notna().any():
            timestamps = np.nanmax(dataset.interactions["timestamp"].to_numpy()) + ranks.astype(np.float64)
        return pd.DataFrame({
            "user_id": profiles_frame.index.to_numpy()[rows],
            "item_id": items,
            "event": template_rows["event"].to_numpy(),
            "value": template_rows["value"].to_numpy(),
            "timestamp": timestamps,
            "dwell_seconds": template_rows["dwell_seconds"].to_numpy(),
        })


def _with_virtual_users(dataset: Dataset, users: pd.DataFrame, interactions: pd.DataFrame) -> Dataset:
    all_users = pd.concat([dataset.users, users.reindex(columns=dataset.users.columns)])
    meta = {**dataset.meta, "virtual_users": int(len(users))}
    return Dataset(
        users=all_users,
        items=dataset.items,
        interactions=pd.concat([dataset.interactions, interactions], ignore_index=True),
        name=dataset.name,
        meta=meta,
    )


def _vocabulary(counts: np.ndarray, max_vocabulary: int | None) -> np.ndarray:
    """Item positions with training interactions, the ``max_vocabulary`` most chosen if set (sorted)."""
    chosen = np.flatnonzero(counts > 0)
    if max_vocabulary is not None and len(chosen) > int(max_vocabulary):
        order = np.lexsort((chosen, -counts[chosen]))  # ties by position, for determinism
        chosen = np.sort(chosen[order[: int(max_vocabulary)]])
    return chosen.astype(np.int64)


def _split_rows(n_rows: int, params: Mapping[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle user rows into training and validation (validation empty for tiny data)."""
    order = rng.permutation(n_rows)
    n_validation = min(int(n_rows * float(params["validation_share"])), int(params["max_validation_users"]))
    if n_validation < 10:
        return order, order[:0]
    return order[n_validation:], order[:n_validation]


def _normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to unit L2 norm (Mult-VAE's input normalisation); empty rows stay empty."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix)


class _Trainer:
    """Mini-batch training with early stopping on a validation split of training users.

    The history is kept as CSR arrays; a batch is gathered with array ops, and the sampled
    softmax costs O(users × negatives + pairs) per step, so an epoch is a few dozen cheap steps.
    """

    def __init__(self, strategy: GenerativeStrategy, torch, rng: np.random.Generator, history: sp.csr_matrix,
                 profiles: sp.csr_matrix):
        self.strategy = strategy
        self.params = strategy.params
        self.torch = torch
        self.rng = rng
        self.network = strategy.network
        self.history = history
        self.profiles = profiles
        self.row_lengths = np.diff(history.indptr)
        self.proposal = proposal_distribution(strategy.vocabulary_counts)
        self.full_softmax = len(self.proposal) <= 2 * int(self.params["negatives"])

    def run(self, train_rows: np.ndarray, validation_rows: np.ndarray) -> dict:
        params = self.params
        budget = TrainingBudget(params["max_seconds"])
        validation = self._validation_batch(validation_rows)
        best_score, best_state, best_epoch, scores = -np.inf, None, 0, []
        steps_per_epoch = max(1, int(np.ceil(len(train_rows) / int(params["batch_size"]))))
        anneal_steps = max(1, int(params["anneal_epochs"]) * steps_per_epoch)
        step, epochs_run = 0, 0
        for epoch in range(int(params["epochs"])):
            budget.start_epoch()
            self.network.train()
            for batch in np.array_split(self.rng.permutation(train_rows), steps_per_epoch):
                beta = float(params["beta_max"]) * min(1.0, step / anneal_steps)
                self.network.train_step(self._batch(batch), beta, params)
                step += 1
                if budget.exhausted():
                    break
            epochs_run += 1
            if validation is not None:
                score = self._validate(validation)
                scores.append(score)
                if score > best_score:
                    best_score, best_state, best_epoch = score, copy_state(self.network), epoch
                elif epoch >= int(params["anneal_epochs"]) and epoch - best_epoch >= int(params["patience"]):
                    # Not during the KL anneal: the validation score dips while the KL weight grows.
                    break
            if budget.end_epoch(more_epochs=epoch + 1 < int(params["epochs"])):
                break
        if best_state is not None:
            self.network.load_state_dict(best_state)
        return {"validation_auc": scores, "best_epoch": best_epoch, "epochs_run": epochs_run, "steps": step,
                "stopped_by_budget": budget.stopped, "seconds": round(budget.elapsed, 3)}

    def _rows_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch row, vocabulary column) of every interaction of history rows ``rows``."""
        lengths = self.row_lengths[rows]
        starts = np.repeat(self.history.indptr[rows], lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return np.repeat(np.arange(len(rows)), lengths), self.history.indices[starts + offsets].astype(np.int64)

    def _batch(self, rows: np.ndarray) -> dict:
        """Tensors for one batch: dropped-out normalised input, target pairs, negatives."""
        torch = self.torch
        pair_user, pair_item = self._rows_of(rows)
        if self.params["input_dropout"] == "uniform":
            dropout = self.rng.random(len(rows))[pair_user]
        else:
            dropout = np.full(len(pair_user), float(self.params["input_dropout"]))
        kept = self.rng.random(len(pair_user)) >= dropout
        # Unit L2 norm over the kept items, exactly as revealed events are normalised when scoring.
        scale = (1.0 / np.sqrt(np.maximum(np.bincount(pair_user[kept], minlength=len(rows)), 1))).astype(np.float32)
        input_user = pair_user[kept]
        offsets = np.searchsorted(input_user, np.arange(len(rows)))
        negatives = self._negatives()
        return {
            "profile": profile_bags(self._drop_profiles(self.profiles[rows])),
            "input": (torch.from_numpy(pair_item[kept]), torch.from_numpy(offsets.astype(np.int64)),
                      torch.from_numpy(scale[input_user])),
            "pair_user": torch.from_numpy(pair_user),
            "pair_item": torch.from_numpy(pair_item),
            "negatives": negatives,
            "n_users": len(rows),
            "full_softmax": self.full_softmax,
            "hit": self._hits(pair_user, pair_item, len(rows), negatives[0].numpy()),
        }

    def _drop_profiles(self, profiles: sp.csr_matrix) -> sp.csr_matrix:
        """Hide whole profiles of a random share of users (the intercept column stays)."""
        hidden = self.rng.random(profiles.shape[0]) < float(self.params["profile_dropout"])
        coo = profiles.tocoo()
        keep = ~hidden[coo.row] | (coo.col == profiles.shape[1] - 1)
        return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=profiles.shape)

    def _negatives(self):
        """Shared negatives of a batch: (item indices, log of K·q for the logQ correction)."""
        torch = self.torch
        n_negatives = int(self.params["negatives"])
        if self.full_softmax:
            items = np.arange(len(self.proposal))
            log_q = np.zeros(len(items))
        else:
            items = self.rng.choice(len(self.proposal), size=n_negatives, replace=True, p=self.proposal)
            log_q = np.log(n_negatives * self.proposal[items])
        return torch.from_numpy(items.astype(np.int64)), torch.from_numpy(log_q.astype(np.float32))

    def _hits(self, pair_user: np.ndarray, pair_item: np.ndarray, n_users: int, negatives: np.ndarray):
        """(users, K) bool: the negative is one of the user's own items."""
        distinct, column = np.unique(negatives, return_inverse=True)
        column_of_item = np.full(len(self.proposal), -1, dtype=np.int64)
        column_of_item[distinct] = np.arange(len(distinct))
        own_column = column_of_item[pair_item]
        sampled = own_column >= 0
        hit = np.zeros((n_users, len(distinct)), dtype=bool)
        hit[pair_user[sampled], own_column[sampled]] = True
        return self.torch.from_numpy(hit[:, column.ravel()])

    def _validation_batch(self, rows: np.ndarray):
        """Validation users with half their items revealed, the other half hidden, fixed negatives."""
        if len(rows) == 0:
            return None
        pair_user, pair_item = self._rows_of(rows)
        revealed = self.rng.random(len(pair_user)) < 0.5
        has_hidden = np.bincount(pair_user[~revealed], minlength=len(rows)) > 0
        keep = np.flatnonzero(has_hidden)
        new_row = np.cumsum(has_hidden) - 1
        revealed_matrix = sp.csr_matrix(
            (np.ones(int((revealed & has_hidden[pair_user]).sum()), dtype=np.float32),
             (new_row[pair_user[revealed & has_hidden[pair_user]]], pair_item[revealed & has_hidden[pair_user]])),
            shape=(len(keep), len(self.proposal)),
        )
        hidden = ~revealed & has_hidden[pair_user]
        n_negatives = min(int(self.params["negatives"]), len(self.proposal))
        negatives = self.rng.choice(len(self.proposal), size=n_negatives, replace=True, p=self.proposal)
        own = self._hits(new_row[pair_user[has_hidden[pair_user]]], pair_item[has_hidden[pair_user]], len(keep), negatives)
        return {
            "profile": profile_bags(self.profiles, rows[keep]),
            "input": csr_bags(_normalise_rows(revealed_matrix)),
            "hidden_user": self.torch.from_numpy(new_row[pair_user[hidden]]),
            "hidden_item": self.torch.from_numpy(pair_item[hidden]),
            "negatives": self.torch.from_numpy(negatives.astype(np.int64)),
            "not_own": ~own,
        }

    def _validate(self, validation) -> float:
        """Sampled AUC: share of (hidden item, negative) pairs the model ranks right.

        Only the hidden items' and the negatives' logits are computed, not the whole vocabulary.
        """
        self.network.eval()
        with self.torch.no_grad():
            hidden_state = self.network.output_hidden(validation["profile"], validation["input"])
            positive = self.network.output.pair_logits(hidden_state, validation["hidden_user"], validation["hidden_item"])
            negative = self.network.output.logits(hidden_state, validation["negatives"])[validation["hidden_user"]]
            not_own = validation["not_own"][validation["hidden_user"]]
            wins = ((positive[:, None] > negative) & not_own).sum() + 0.5 * ((positive[:, None] == negative) & not_own).sum()
        return float(wins) / max(float(not_own.sum()), 1.0)


def _sampled_log_likelihood(torch, hidden, output, batch):
    """Per-pair log p(item | user) under a (sampled) softmax over the vocabulary.

    With a full softmax the result is exact. Else the partition function of each user is
    estimated from the batch's shared negatives (logQ-corrected, the user's own items masked):
    log Z ≈ log(exp(s_pos) + Σ_k exp(s_k − log K·q_k)). The negatives' sum is per user, so a
    step costs users × K, not pairs × K.
    """
    pair_user, pair_item = batch["pair_user"], batch["pair_item"]
    negative_items, log_q = batch["negatives"]
    if batch["full_softmax"]:
        return torch.log_softmax(output.logits(hidden), dim=1)[pair_user, pair_item]
    negative_logits = (output.logits(hidden, negative_items) - log_q).masked_fill(batch["hit"], -1e9)
    negative_mass = torch.logsumexp(negative_logits, dim=1)
    positive = output.pair_logits(hidden, pair_user, pair_item)
    return positive - torch.logaddexp(positive, negative_mass[pair_user])


def _modules():
    """Build the torch module classes lazily, so importing this file never needs torch."""
    torch = require_torch()
    nn = torch.nn

    class ItemOutput(nn.Module):
        """Output layer over the vocabulary: one weight row and bias per item."""

        def __init__(self, n_items, hidden_dim):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_items, hidden_dim) * 0.01)
            self.bias = nn.Parameter(torch.zeros(n_items))

        def logits(self, hidden, items=None):
            """(users, items) logits over the vocabulary, or over item indices ``items``."""
            if items is None:
                return hidden @ self.weight.T + self.bias
            return hidden @ self.weight[items].T + self.bias[items]

        def pair_logits(self, hidden, pair_user, pair_item):
            """Logit of item ``pair_item[j]`` for user ``pair_user[j]``."""
            return (hidden[pair_user] * self.weight[pair_item]).sum(1) + self.bias[pair_item]

    class ConditionalVAE(nn.Module):
        def __init__(self, n_items, n_profile, hidden_dim, latent_dim, noise_dim):
            super().__init__()
            self.item_input = nn.EmbeddingBag(n_items, hidden_dim, mode="sum")
            self.profile_input = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.to_latent = nn.Linear(hidden_dim, 2 * latent_dim)
            self.decoder_profile = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.decoder_latent = nn.Linear(latent_dim, hidden_dim)
            self.output = ItemOutput(n_items, hidden_dim)
            self.latent_dim = latent_dim
            # The fused kernel updates all parameters in one pass (much cheaper on CPU).
            self.optimizer = torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)

        def encode(self, profile, history):
            indices, offsets, weights = history
            hidden = torch.tanh(self.item_input(indices, offsets, per_sample_weights=weights) + self.profile_input(*profile))
            mean, log_variance = self.to_latent(hidden).chunk(2, dim=1)
            return mean, log_variance

        def decode(self, latent, profile):
            return torch.tanh(self.decoder_latent(latent) + self.decoder_profile(*profile))

        def output_hidden(self, profile, history):
            mean, _ = self.encode(profile, history)
            return self.decode(mean, profile)

        def score(self, profile, history):
            return self.output.logits(self.output_hidden(profile, history))

        def sample_log_probabilities(self, profile):
            # z from q(z | no items, c): with a small KL weight the aggregate posterior is far
            # from N(0, I), so the profile-conditioned posterior is the better sampler.
            n_rows = len(profile[1])
            empty = (torch.zeros(0, dtype=torch.long), torch.zeros(n_rows, dtype=torch.long), torch.zeros(0))
            mean, log_variance = self.encode(profile, empty)
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
            return torch.log_softmax(self.output.logits(self.decode(latent, profile)), dim=1)

        def train_step(self, batch, beta, params):
            for group in self.optimizer.param_groups:
                group["lr"] = float(params["learning_rate"])
            mean, log_variance = self.encode(batch["profile"], batch["input"])
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
            hidden = self.decode(latent, batch["profile"])
            log_likelihood = _sampled_log_likelihood(torch, hidden, self.output, batch)
            n_users = batch["n_users"]
            reconstruction = -log_likelihood.sum() / n_users
            kl = -0.5 * torch.sum(1 + log_variance - mean.pow(2) - log_variance.exp()) / n_users
            loss = reconstruction + beta * kl
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return float(loss.detach())

    class ConditionalGAN(nn.Module):
        def __init__(self, n_items, n_profile, hidden_dim, latent_dim, noise_dim):
            super().__init__()
            self.noise_dim = noise_dim
            # Generator G(c, x̃, noise) → purchase vector over the vocabulary.
            self.g_history = nn.EmbeddingBag(n_items, hidden_dim, mode="sum")
            self.g_profile = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.g_noise = nn.Linear(noise_dim, hidden_dim)
            self.g_hidden = nn.Linear(hidden_dim, hidden_dim)
            self.g_output = ItemOutput(n_items, hidden_dim)
            # Discriminator D(x ⊙ mask, c) → real or generated.
            self.d_items = nn.Parameter(torch.randn(n_items, hidden_dim) * 0.01)
            self.d_profile = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.d_output = nn.Linear(hidden_dim, 1)
            generator = [p for name, p in self.named_parameters() if name.startswith("g_")]
            discriminator = [p for name, p in self.named_parameters() if name.startswith("d_")]
            self.g_optimizer = torch.optim.Adam(generator, lr=1e-3, fused=True)
            self.d_optimizer = torch.optim.Adam(discriminator, lr=1e-3, fused=True)

        def generator_hidden(self, profile, history, noise):
            indices, offsets, weights = history
            first = self.g_history(indices, offsets, per_sample_weights=weights) + self.g_profile(*profile) + self.g_noise(noise)
            return torch.tanh(self.g_hidden(torch.tanh(first)))

        @property
        def output(self):
            return self.g_output

        def output_hidden(self, profile, history):
            return self.generator_hidden(profile, history, torch.zeros(len(profile[1]), self.noise_dim))

        def score(self, profile, history):
            return self.g_output.logits(self.output_hidden(profile, history))

        def sample_log_probabilities(self, profile):
            n_rows = len(profile[1])
            empty = (torch.zeros(0, dtype=torch.long), torch.zeros(n_rows, dtype=torch.long), torch.zeros(0))
            logits = self.g_output.logits(self.generator_hidden(profile, empty, torch.randn(n_rows, self.noise_dim)))
            return torch.log_softmax(logits, dim=1)

        def discriminate(self, profile, pair_user, pair_item, values, n_users):
            summed = torch.zeros(n_users, self.d_items.shape[1]).index_add_(0, pair_user, values[:, None] * self.d_items[pair_item])
            return self.d_output(torch.nn.functional.leaky_relu(summed + self.d_profile(*profile), 0.2)).squeeze(1)

        def train_step(self, batch, beta, params):
            for optimizer in (self.g_optimizer, self.d_optimizer):
                for group in optimizer.param_groups:
                    group["lr"] = float(params["learning_rate"])
            n_users = batch["n_users"]
            negative_items, _ = batch["negatives"]
            # Partial masking: D sees the user's items plus sampled negatives that are not theirs.
            negative_user, negative_column = torch.nonzero(~batch["hit"], as_tuple=True)
            pair_user = torch.cat([batch["pair_user"], negative_user])
            pair_item = torch.cat([batch["pair_item"], negative_items[negative_column]])
            is_positive = torch.cat([torch.ones(len(batch["pair_user"])), torch.zeros(len(negative_user))])
            hidden = self.generator_hidden(batch["profile"], batch["input"], torch.randn(n_users, self.noise_dim))
            generated = torch.sigmoid((hidden[pair_user] * self.g_output.weight[pair_item]).sum(1) + self.g_output.bias[pair_item])
            bce = torch.nn.functional.binary_cross_entropy_with_logits
            real_logit = self.discriminate(batch["profile"], pair_user, pair_item, is_positive, n_users)
            fake_logit = self.discriminate(batch["profile"], pair_user, pair_item, generated.detach(), n_users)
            d_loss = bce(real_logit, torch.ones(n_users)) + bce(fake_logit, torch.zeros(n_users))
            self.d_optimizer.zero_grad()
            d_loss.backward()
            self.d_optimizer.step()
            fake_logit = self.discriminate(batch["profile"], pair_user, pair_item, generated, n_users)
            zero_reconstruction = (generated[len(batch["pair_user"]):] ** 2).sum() / n_users
            g_loss = bce(fake_logit, torch.ones(n_users)) + float(params["zero_reconstruction"]) * zero_reconstruction
            self.g_optimizer.zero_grad()
            g_loss.backward()
            self.g_optimizer.step()
            return float(g_loss.detach())

    return ConditionalVAE, ConditionalGAN


def _ConditionalVAE(**dims):
    return _modules()[0](**dims)


def _ConditionalGAN(**dims):
    return _modules()[1](**dims)
