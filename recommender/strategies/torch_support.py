"""Shared plumbing of the torch strategies (``generative``, ``behavior``).

Torch is an optional dependency (heavy dependencies behind clear messages: docs/architecture.md, "Layers"): this module imports it lazily, and a strategy
that needs it calls ``require_torch()`` in its constructor, so a missing torch is a clear
error naming the package to install while the rest of the app keeps working.

Training runs inside ``torch_session`` so that a fit on a 2-core machine uses at most two
threads and is reproducible by seed (same seed, same scores), without leaving global torch
state changed for the host process.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.core.exceptions import ImproperlyConfigured

TORCH_REQUIREMENT = "torch==2.13.0"


class TrainingBudget:
    """Wall-clock cap on a training loop (``seconds`` None: no cap).

    Call ``exhausted()`` after each step (training stops mid-epoch once the cap is passed),
    ``start_epoch()`` before each epoch and ``end_epoch(more_epochs)`` after it: it also stops
    before another epoch that would overrun the cap (epochs cost about the same). ``stopped``
    says whether the cap cut training short.
    """

    def __init__(self, seconds: float | None):
        self.seconds = None if seconds is None else float(seconds)
        self.started = self._epoch_started = time.perf_counter()
        self.stopped = False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def start_epoch(self) -> None:
        self._epoch_started = time.perf_counter()

    def exhausted(self) -> bool:
        if self.seconds is not None and self.elapsed > self.seconds:
            self.stopped = True
        return self.stopped

    def end_epoch(self, more_epochs: bool) -> bool:
        """Whether to stop now: the cap was passed, or one more epoch like the last would pass it."""
        if self.seconds is not None and more_epochs:
            last_epoch = time.perf_counter() - self._epoch_started
            if self.elapsed + last_epoch > self.seconds:
                self.stopped = True
        return self.stopped


def require_torch():
    """Return the ``torch`` module, or raise ImproperlyConfigured saying what to install."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - exercised only without torch
        raise ImproperlyConfigured(
            f"This recommendation strategy needs PyTorch: pip install {TORCH_REQUIREMENT}"
        ) from error
    return torch


@contextlib.contextmanager
def torch_session(seed: int, threads: int = 2):
    """Seed torch, cap its threads and ask for deterministic kernels; restore all on exit."""
    torch = require_torch()
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, min(int(threads), previous_threads, 2)))
    torch.use_deterministic_algorithms(True, warn_only=True)
    _seed(torch, int(seed))
    try:
        yield torch
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def _seed(torch, seed: int) -> None:
    """``torch.manual_seed`` without its cost where no accelerator is in use.

    Without CUDA initialised, ``torch.manual_seed`` queues a seed for every lazily initialised
    device and formats a stack trace for each: milliseconds per call, paid on every scored
    request. The CPU generator is what inference and CPU training use.
    """
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def profile_bags(profile_matrix: sp.csr_matrix, rows: np.ndarray | None = None):
    """EmbeddingBag inputs (indices, offsets) of the one-hot profile rows ``rows``.

    Profiles are one-hot over thousands of values (cities), so they enter the networks as a
    sum of embeddings instead of a dense matrix product.
    """
    torch = require_torch()
    matrix = profile_matrix if rows is None else profile_matrix[rows]
    indices = torch.from_numpy(matrix.indices.astype(np.int64))
    offsets = torch.from_numpy(matrix.indptr[:-1].astype(np.int64))
    return indices, offsets


def csr_bags(matrix: sp.csr_matrix):
    """EmbeddingBag inputs (indices, offsets, weights) of every row of a CSR matrix."""
    torch = require_torch()
    return (
        torch.from_numpy(matrix.indices.astype(np.int64)),
        torch.from_numpy(matrix.indptr[:-1].astype(np.int64)),
        torch.from_numpy(matrix.data.astype(np.float32)),
    )


def proposal_distribution(item_counts: np.ndarray, popularity_share: float = 0.5) -> np.ndarray:
    """Negative-sampling distribution over items: a mix of uniform and count^0.75.

    The uniform part keeps the tail represented; the popular part makes the sampled softmax
    push down the items a full softmax would push down most. Sampled logits are corrected by
    ``log(q)`` so the estimate stays close to the full softmax.
    """
    n_items = len(item_counts)
    uniform = np.full(n_items, 1.0 / n_items)
    weights = np.power(item_counts.astype(np.float64), 0.75)
    popular = weights / weights.sum() if weights.sum() > 0 else uniform
    return (1.0 - popularity_share) * uniform + popularity_share * popular


def log_prior(counts: np.ndarray) -> np.ndarray:
    """Log of each item's share of the training choices (half a count of smoothing).

    The initial output bias of the torch strategies, and the prior they back off to: a softmax
    over these logits is the popularity distribution itself, the best a model can do for a
    user it knows nothing about. Started at zero instead, the biases had to climb to it by
    gradient steps, and within a training budget of seconds they did not: with no events the
    models ranked below plain popularity (docs/benchmarks.md).
    """
    counts = np.asarray(counts, dtype=np.float64) + 0.5
    return np.log(counts / counts.sum()).astype(np.float32)


# Cut-off of the validation ranking metric that picks the best epoch (the evaluator's K).
VALIDATION_K = 10


def top_k_rows(logits, known: sp.csr_matrix | None = None, k: int = VALIDATION_K) -> np.ndarray:
    """(users, k) item indices of a (users, items) logits tensor, best first; ``known`` items never."""
    torch = require_torch()
    if known is not None and known.nnz:
        logits = logits.clone()
        coo = known.tocoo()
        logits[torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))] = -torch.inf
    return torch.topk(logits, min(int(k), logits.shape[1]), dim=1).indices.numpy()


def validation_ndcg(logits, relevant: sp.csr_matrix, known: sp.csr_matrix | None = None, k: int = VALIDATION_K) -> float:
    """Mean NDCG@k of a (users, items) logits tensor against ``relevant`` (users without any skipped).

    ``known`` items (the revealed ones) are never ranked. The best epoch is picked on this, a
    ranking of the whole vocabulary as the evaluator and serving rank it, not on a sampled
    AUC: an AUC against negatives drawn largely uniformly rewards ordering the tail and is
    nearly blind to the top of the list, where popular items compete.
    """
    from ..evaluation.metrics import mean_ndcg  # the evaluator's own metric (imported lazily: no cycle)

    return mean_ndcg(top_k_rows(logits, known, k), relevant, int(k))


# Weights of the model against the popularity prior tried on the validation users (1: the model alone).
PRIOR_WEIGHTS = (1.0, 0.9, 0.75, 0.5, 0.25, 0.1, 0.0)


def mix_with_prior(logits, item_log_prior, weight: float):
    """Log of ``weight × softmax(logits) + (1 − weight) × prior``, row by row (a torch tensor).

    The back-off of a learned model to popularity, as demographic shrinks its neighbours toward
    segment popularity: where the model (say, for a visitor with no events yet) knows less
    than the training counts, the validation users pick a weight below 1.
    """
    torch = require_torch()
    weight = float(weight)
    if weight >= 1.0:
        return logits
    prior = torch.as_tensor(item_log_prior, dtype=logits.dtype)[None, :]
    if weight <= 0.0:
        return prior.expand_as(logits).clone()
    return torch.logaddexp(np.log(weight) + torch.log_softmax(logits, dim=1), np.log1p(-weight) + prior)


def choose_prior_weight(logits, item_log_prior, relevant: sp.csr_matrix, known: sp.csr_matrix | None = None) -> float:
    """The ``PRIOR_WEIGHTS`` entry with the best validation NDCG@10 (ties: the larger weight)."""
    best_weight, best_score = 1.0, -np.inf
    for weight in PRIOR_WEIGHTS:
        score = validation_ndcg(mix_with_prior(logits, item_log_prior, weight), relevant, known)
        if score > best_score + 1e-12:
            best_weight, best_score = weight, score
    return best_weight


def save_torch_state(path: Path, module) -> None:
    """Write a module's ``state_dict`` (tensors only; loaded with ``weights_only=True``)."""
    torch = require_torch()
    torch.save({name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}, path)


def load_torch_state(path: Path, module) -> None:
    torch = require_torch()
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, default=_json_default))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{value!r} is not JSON serialisable")


def copy_state(module) -> dict:
    """A detached copy of a module's ``state_dict`` (to keep the best epoch's weights)."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def profile_matrix(encoder, profiles) -> sp.csr_matrix:
    """One-hot profiles plus an always-on last column, so no profile encodes as an empty bag."""
    encoded = encoder.transform(profiles)
    intercept = sp.csr_matrix(np.ones((encoded.shape[0], 1), dtype=np.float32))
    return sp.hstack([encoded, intercept], format="csr", dtype=np.float32)


def user_profiles_frame(dataset):
    """The users frame aligned to ``dataset.user_ids`` (users without a row get no attributes)."""
    return dataset.users.reindex(dataset.user_ids)
