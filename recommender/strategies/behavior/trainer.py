"""Training of the behavior network: next-item prediction over users' first events.

Length-bucketed mini-batches; each position predicts the next interacted item with a
logQ-corrected sampled softmax (exact for small catalogues). A share of id embeddings is
dropped per batch so the content path carries signal on its own, and a share of profiles is
hidden so anonymous sessions are in-sample. The best epoch is chosen by a sampled AUC on a
validation split of the training users.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..torch_support import TrainingBudget, copy_state, profile_bags, proposal_distribution

logger = logging.getLogger(__name__)


class BehaviorTrainer:
    """Length-bucketed mini-batches, sampled softmax, early stopping on held-out users."""

    def __init__(self, network, params: Mapping[str, Any], torch, rng, sequences, profiles, item_counts, item_tables):
        self.torch, self.rng = torch, rng
        self.params = params
        self.network = network
        self.sequences, self.profiles = sequences, profiles
        self.proposal = proposal_distribution(item_counts)
        self.items = item_tables
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
