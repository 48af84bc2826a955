"""Training of the behavior network: next-item prediction over users' first events.

Length-bucketed mini-batches; each position predicts the next interacted item with a
logQ-corrected sampled softmax (exact for small catalogues). A share of id embeddings is
dropped per batch so the content path carries signal on its own, and a share of profiles is
hidden so anonymous sessions are in-sample. The best epoch (or the untrained start, whose item
biases rank by popularity) is chosen by NDCG@10 over the whole catalogue on a validation split of
the training users, who also choose how far the scores back off to popularity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...evaluation.metrics import mean_ndcg
from ..torch_support import (PRIOR_WEIGHTS, VALIDATION_K, TrainingBudget, copy_state, mix_with_prior,
                             profile_bags, proposal_distribution, top_k_rows)

# No back-off to the prior (data too small for a validation split).
NO_BACK_OFF = {"no_events": 1.0, "with_events": 1.0}

logger = logging.getLogger(__name__)


class BehaviorTrainer:
    """Length-bucketed mini-batches, sampled softmax, early stopping on held-out users."""

    def __init__(self, network, params: Mapping[str, Any], torch, rng, sequences, profiles, item_counts,
                 item_tables, item_log_prior: np.ndarray):
        self.torch, self.rng = torch, rng
        self.item_log_prior = item_log_prior
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
        validation = self._validation_cases(validation_rows) if len(validation_rows) else None
        best_score, best_state, best_epoch, scores = -np.inf, None, -1, []
        self.case_scores = []  # per epoch: [no event revealed, half revealed, half revealed anonymously]
        if validation is not None:
            # The untrained network's biases rank by popularity: training is kept only where it
            # beats the start on the held-out users (best_epoch -1 if it never does).
            best_score, best_state = self._validate(validation), copy_state(self.network)
            scores.append(best_score)
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
            if validation is not None:
                score = self._validate(validation)
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
        prior_weights = self._prior_weights(validation) if validation is not None else dict(NO_BACK_OFF)
        return {"prior_weights": prior_weights, "validation_ndcg": scores,
                "validation_ndcg_by_case": self.case_scores, "best_epoch": best_epoch,
                "epochs_run": epochs_run, "stopped_by_budget": budget.stopped, "seconds": round(budget.elapsed, 3)}

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

    def _validation_cases(self, rows: np.ndarray) -> list[dict]:
        """Held-out users as new visitors: with no event revealed (every item of their sequence
        relevant), and with the first half revealed (the rest relevant, the revealed never ranked),
        with their profile and without."""
        lengths = self.sequences["lengths"][rows]
        items = self.sequences["items"][rows] - 1  # item positions, -1 padding
        column = np.arange(items.shape[1])[None, :]
        present = column < lengths[:, None]
        chosen = present & self.sequences["positive"][rows]  # what the user must be shown: their choices
        n_items = len(self.proposal)

        def matrix(mask, selected):
            row, col = np.nonzero(mask[selected])
            result = sp.csr_matrix((np.ones(len(row), dtype=np.float32), (row, items[selected][row, col])),
                                   shape=(len(selected), n_items))
            result.data[:] = 1.0
            return result

        everyone = np.arange(len(rows))
        halved = np.flatnonzero(lengths >= 2)
        half = lengths // 2
        with_events = {"events": True, "rows": rows[halved], "position": half[halved],
                       "known": matrix(present & (column < half[:, None]), halved),
                       "relevant": matrix(chosen & (column >= half[:, None]), halved)}
        return [
            {"events": False, "anonymous": False, "rows": rows, "known": None,
             "position": np.zeros(len(rows), dtype=np.int64), "relevant": matrix(chosen, everyone)},
            {**with_events, "anonymous": False},
            {**with_events, "anonymous": True},
        ]

    def _case_logits(self, case: dict, chunk: int = 256):
        """(row slice, logits over every item) of a validation case, ``chunk`` users at a time."""
        torch = self.torch
        representation, bias = self.network.items(torch.arange(len(self.proposal)), self.items)
        for start in range(0, len(case["rows"]), chunk):
            rows = case["rows"][start:start + chunk]
            profile, tokens, _ = self._inputs(rows, False)
            if case["anonymous"]:  # only the always-on intercept column (torch_support.profile_matrix)
                profile = (torch.full((len(rows),), self.profiles.shape[1] - 1, dtype=torch.long),
                           torch.arange(len(rows), dtype=torch.long))
            hidden = self.network.sequence(profile, tokens, self.items)
            at = hidden[torch.arange(len(rows)), torch.from_numpy(case["position"][start:start + chunk])]
            yield slice(start, start + chunk), at @ representation.T + bias

    def _case_tops(self, case: dict, weights) -> dict:
        """Top-10 of each validation user of ``case`` for each prior weight."""
        tops = {weight: [] for weight in weights}
        for rows, logits in self._case_logits(case):
            known = None if case["known"] is None else case["known"][rows]
            for weight in weights:
                tops[weight].append(top_k_rows(mix_with_prior(logits, self.item_log_prior, weight), known))
        return {weight: np.vstack(parts) for weight, parts in tops.items()}

    def _validate(self, validation) -> float:
        """Mean NDCG@10 over the whole catalogue, averaged over the validation cases."""
        self.network.eval()
        with self.torch.no_grad():
            scores = [mean_ndcg(self._case_tops(case, (1.0,))[1.0], case["relevant"], VALIDATION_K)
                      for case in validation]
        self.case_scores.append([round(score, 5) for score in scores])
        return float(np.mean(scores))

    def _prior_weights(self, validation) -> dict:
        """Weight of the trained model against the popularity prior, for visitors without and
        with events, chosen on the validation users (``torch_support.mix_with_prior``)."""
        self.network.eval()
        weights = {}
        with self.torch.no_grad():
            for name, events in (("no_events", False), ("with_events", True)):
                cases = [case for case in validation if case["events"] == events]
                tops = [self._case_tops(case, PRIOR_WEIGHTS) for case in cases]
                relevant = sp.vstack([case["relevant"] for case in cases], format="csr")
                ndcg = {weight: mean_ndcg(np.vstack([top[weight] for top in tops]), relevant, VALIDATION_K)
                        for weight in PRIOR_WEIGHTS}
                weights[name] = max(PRIOR_WEIGHTS, key=lambda weight: (ndcg[weight], weight))
        return weights
