"""Virtual users for sparse segments, sampled from a fitted generative model.

``GenerativeStrategy.augment`` is the public entry; this module holds the work: pick the
segments to grow, copy profiles from the segment's real users, draw their items from the
model's p(x | z, c) with z ~ q(z | c), and take event types, values and dwell times from the
segment's real interactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ...data.dataset import Dataset
from ...data.features import segment_of
from ..torch_support import profile_bags, profile_matrix, torch_session, user_profiles_frame

VIRTUAL_PREFIX = "virtual-"


def augment_dataset(
    strategy,
    dataset: Dataset,
    segments: Sequence[Mapping[str, str] | tuple] | None,
    n_per_segment: int | None,
    keys: tuple[str, ...],
    rng: np.random.Generator,
) -> Dataset:
    """``dataset`` plus virtual users for ``segments`` (None: the sparse ones), from fitted ``strategy``."""
    users = user_profiles_frame(dataset)
    active_users = np.flatnonzero(np.bincount(dataset.user_codes, minlength=dataset.n_users) > 0)
    user_segments = pd.Series(
        [segment_of(tokens, keys) for tokens in strategy.encoder.tokens_frame(users.iloc[active_users])],
        index=active_users,
    )
    user_segments = user_segments[user_segments.map(lambda segment: None not in segment)]
    sizes = user_segments.value_counts()
    if sizes.empty:
        return dataset
    wanted = _wanted_segments(sizes, segments, keys, n_per_segment)
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
        virtual_interactions.append(_sample_interactions(strategy, dataset, profiles_frame, members, lengths, rng))
    if not virtual_users:
        return dataset
    return _with_virtual_users(dataset, pd.concat(virtual_users), pd.concat(virtual_interactions, ignore_index=True))


def _wanted_segments(sizes: pd.Series, segments, keys, n_per_segment) -> dict[tuple, int]:
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


def _sample_interactions(strategy, dataset, profiles_frame, members, lengths, rng) -> pd.DataFrame:
    """Draw each virtual user's items from p(x | c) without replacement (Gumbel top-k)."""
    profiles = profile_matrix(strategy.encoder, profiles_frame)
    with torch_session(int(rng.integers(2**31)), strategy.params["threads"]) as torch, torch.no_grad():
        log_probabilities = strategy.network.sample_log_probabilities(profile_bags(profiles)).numpy()
    lengths = np.minimum(lengths, log_probabilities.shape[1])
    keys = log_probabilities + rng.gumbel(size=log_probabilities.shape)
    order = np.argsort(-keys, axis=1)
    take = np.arange(order.shape[1])[None, :] < lengths[:, None]
    rows, ranks = np.nonzero(take)
    items = dataset.item_ids[strategy.vocabulary_positions[order[rows, ranks]]]
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
