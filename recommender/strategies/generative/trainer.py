"""Training of the generative strategy's network: mini-batches, sampled softmax, early stopping.

``GenerativeTrainer`` keeps the users × vocabulary history as CSR arrays; a batch is gathered
with array ops (a dropped-out, normalised copy of each user's items as input, every item as a
target, shared negatives for the sampled softmax), so an epoch is a few dozen cheap steps.
The best epoch (or the untrained, popularity-ranking start) is chosen by NDCG@10 over the whole
vocabulary on a validation split of the training users.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..torch_support import (TrainingBudget, choose_prior_weight, copy_state, csr_bags, profile_bags,
                             log_prior, proposal_distribution, validation_ndcg)
from .network import normalise_rows

# No back-off to the prior (data too small for a validation split).
NO_BACK_OFF = {"no_events": 1.0, "with_events": 1.0}


def split_rows(n_rows: int, params: Mapping[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle user rows into training and validation (validation empty for tiny data)."""
    order = rng.permutation(n_rows)
    n_validation = min(int(n_rows * float(params["validation_share"])), int(params["max_validation_users"]))
    if n_validation < 10:
        return order, order[:0]
    return order[n_validation:], order[:n_validation]


class GenerativeTrainer:
    """Mini-batch training with early stopping on a validation split of training users.

    The history is kept as CSR arrays; a batch is gathered with array ops, and the sampled
    softmax costs O(users × negatives + pairs) per step, so an epoch is a few dozen cheap steps.
    """

    def __init__(self, network, params: Mapping[str, Any], torch, rng: np.random.Generator, history: sp.csr_matrix,
                 profiles: sp.csr_matrix, vocabulary_counts: np.ndarray):
        self.params = params
        self.torch = torch
        self.rng = rng
        self.network = network
        self.history = history
        self.profiles = profiles
        self.row_lengths = np.diff(history.indptr)
        self.proposal = proposal_distribution(vocabulary_counts)
        self.log_prior = log_prior(vocabulary_counts)
        self.full_softmax = len(self.proposal) <= 2 * int(self.params["negatives"])

    def run(self, train_rows: np.ndarray, validation_rows: np.ndarray) -> dict:
        params = self.params
        budget = TrainingBudget(params["max_seconds"])
        validation = self._validation_batch(validation_rows)
        best_score, best_state, best_epoch, scores = -np.inf, None, -1, []
        self.case_scores = []  # per epoch: [no item revealed, half revealed, half revealed anonymously]
        if validation is not None:
            # The untrained network ranks by popularity (output biases = log prior): training
            # is kept only where it beats that on the held-out users (best_epoch -1 if never).
            best_score = self._validate(validation)
            best_state = copy_state(self.network)
            scores.append(best_score)
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
        prior_weights = self._prior_weights(validation) if validation is not None else dict(NO_BACK_OFF)
        return {"prior_weights": prior_weights, "validation_ndcg": scores,
                "validation_ndcg_by_case": self.case_scores, "best_epoch": best_epoch,
                "epochs_run": epochs_run, "steps": step, "stopped_by_budget": budget.stopped, "seconds": round(budget.elapsed, 3)}

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
        # Every user was once a new visitor with nothing revealed: a share of each batch, drawn
        # regardless of history length, is trained from the profile alone (uniform dropout
        # empties mostly short histories, whose items are not the whole shop's).
        empty = self.rng.random(len(rows)) < float(self.params["empty_input_share"])
        kept &= ~empty[pair_user]
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
        """Validation users as the visitors served: with no item revealed (every item relevant);
        with a random half revealed (the other half relevant), with their profile and without."""
        if len(rows) == 0:
            return None
        pair_user, pair_item = self._rows_of(rows)
        n_rows, n_items = len(rows), len(self.proposal)
        revealed = self.rng.random(len(pair_user)) < 0.5

        def part(mask):
            values = np.ones(int(mask.sum()), dtype=np.float32)
            return sp.csr_matrix((values, (pair_user[mask], pair_item[mask])), shape=(n_rows, n_items))

        profiles = self.profiles[rows]
        # Anonymous: only the always-on intercept column (``torch_support.profile_matrix``).
        intercept = np.full(n_rows, profiles.shape[1] - 1)
        anonymous = sp.csr_matrix((np.ones(n_rows, dtype=np.float32), (np.arange(n_rows), intercept)),
                                  shape=profiles.shape)
        empty = sp.csr_matrix((n_rows, n_items), dtype=np.float32)
        half = csr_bags(normalise_rows(part(revealed)))
        return [
            {"events": False, "profile": profile_bags(profiles), "input": csr_bags(empty), "known": None,
             "relevant": part(np.ones(len(pair_user), dtype=bool))},
            {"events": True, "profile": profile_bags(profiles), "input": half, "known": part(revealed),
             "relevant": part(~revealed)},
            {"events": True, "profile": profile_bags(anonymous), "input": half, "known": part(revealed),
             "relevant": part(~revealed)},
        ]

    def _case_logits(self, case: dict):
        return self.network.output.logits(self.network.output_hidden(case["profile"], case["input"]))

    def _prior_weights(self, validation) -> dict:
        """Weight of the trained model against the popularity prior, for visitors without and
        with revealed items, chosen on the validation users (``torch_support.mix_with_prior``)."""
        self.network.eval()
        weights = {}
        with self.torch.no_grad():
            for name, events in (("no_events", False), ("with_events", True)):
                cases = [case for case in validation if case["events"] == events]
                logits = self.torch.cat([self._case_logits(case) for case in cases])
                known = None if cases[0]["known"] is None else sp.vstack([case["known"] for case in cases], format="csr")
                relevant = sp.vstack([case["relevant"] for case in cases], format="csr")
                weights[name] = choose_prior_weight(logits, self.log_prior, relevant, known)
        return weights

    def _validate(self, validation) -> float:
        """Mean NDCG@10 over the whole vocabulary, averaged over the validation cases."""
        self.network.eval()
        with self.torch.no_grad():
            scores = [validation_ndcg(self._case_logits(case), case["relevant"], case["known"]) for case in validation]
        self.case_scores.append([round(score, 5) for score in scores])
        return float(np.mean(scores))
