"""Training of the generative strategy's network: mini-batches, sampled softmax, early stopping.

``GenerativeTrainer`` keeps the users × vocabulary history as CSR arrays; a batch is gathered
with array ops (a dropped-out, normalised copy of each user's items as input, every item as a
target, shared negatives for the sampled softmax), so an epoch is a few dozen cheap steps.
The best epoch is chosen by a sampled AUC on a validation split of the training users.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..torch_support import TrainingBudget, copy_state, csr_bags, profile_bags, proposal_distribution
from .network import normalise_rows


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
            "input": csr_bags(normalise_rows(revealed_matrix)),
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
