"""Strategy specs: the one place where settings become a training run's parameters.

A ``StrategySpec`` is a strategy key, its class and the constructor params a run trains it
with, resolved once per run from ``RECOMMENDER``: the class (``STRATEGIES``), the seed
(``RANDOM_SEED``), the strategy's ``TRAINING_PARAMS``, and the shop-wide settings every strategy
that takes them gets as params (``shared_params``: ``EVENT_WEIGHTS`` → ``event_weights``,
``TEXT_MODEL`` / ``TEXT_MODEL_DEVICE`` / ``TEXT_MODEL_THREADS`` → ``text_model`` /
``text_model_device`` / ``text_model_threads``); explicit ``TRAINING_PARAMS`` win. Below this
boundary (``strategies/``, ``evaluation/``, ``data/``) nothing reads settings; see
docs/architecture.md, "The training layer".

A strategy built from other strategies (the hybrid) declares a ``component_params`` param; its
spec lists its components, each component gets the params it would be trained with alone, and
a host's component gets its class path (``component_paths``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..conf import settings
from ..evaluation.holdout import HoldoutPlan
from ..strategies import registry
from ..strategies.base import Strategy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StrategySpec:
    """What one run trains: ``key``, its class, its constructor params and its components."""

    key: str
    strategy_class: type[Strategy]
    params: Mapping
    component_keys: tuple[str, ...] = field(default=())

    @property
    def is_composite(self) -> bool:
        """Whether the strategy is built from other strategies (it is trained after them)."""
        return bool(self.component_keys)

    def build(self, **overrides) -> Strategy:
        """A new, unfitted strategy with the spec's params (plus ``overrides``)."""
        return self.strategy_class(**{**self.params, **overrides})


def strategy_class(key: str) -> type[Strategy]:
    """The class registered under ``key`` (built in or the host's ``STRATEGIES``)."""
    return registry.get_strategy_class(key, settings.STRATEGIES)


def shared_params() -> dict:
    """Params the shop's settings give every strategy whose ``default_params`` take them."""
    return {
        "event_weights": dict(settings.EVENT_WEIGHTS),
        "text_model": settings.TEXT_MODEL,
        "text_model_device": settings.TEXT_MODEL_DEVICE,
        "text_model_threads": settings.TEXT_MODEL_THREADS,
    }


def own_params(key: str) -> dict:
    """Params of ``key`` as configured for training: the seed, the shared settings it takes,
    then ``TRAINING_PARAMS[key]``."""
    taken = strategy_class(key).default_params
    return {"seed": settings.RANDOM_SEED,
            **{name: value for name, value in shared_params().items() if name in taken},
            **(settings.TRAINING_PARAMS or {}).get(key, {})}


def resolve(key: str) -> StrategySpec:
    """The spec of ``key`` for a run now; an unknown key is an ``ImproperlyConfigured`` naming the known ones."""
    klass = strategy_class(key)
    params = own_params(key)
    components = _importable_components(klass, params)
    if components:
        explicit = params.get("component_params") or {}
        params["component_params"] = {
            component: {**{name: value for name, value in own_params(component).items() if name != "seed"},
                        **explicit.get(component, {})}
            for component in components
        }
        if "component_paths" in klass.default_params:
            host = settings.STRATEGIES or {}
            params["component_paths"] = {component: host[component] for component in components if component in host}
    return StrategySpec(key=key, strategy_class=klass, params=params, component_keys=tuple(components))


def _importable_components(klass: type[Strategy], params: Mapping) -> list[str]:
    """Component keys of a strategy built from others (those whose class imports)."""
    if "component_params" not in klass.default_params:
        return []
    keys = []
    for component in params.get("components") or klass.default_params.get("components") or ():
        try:
            strategy_class(component)
        except Exception:
            continue  # the strategy itself reports the components it cannot import
        keys.append(component)
    return list(dict.fromkeys(keys))


def is_composite(key: str) -> bool:
    return "component_params" in strategy_class(key).default_params


def trainable_strategy_keys(keys: Iterable[str] | None = None) -> list[str]:
    """Registered strategies whose code and dependencies import, components first, composites last."""
    available = []
    for key in registry.available_keys(settings.STRATEGIES) if keys is None else keys:
        try:
            strategy_class(key)
        except Exception as exc:  # a missing optional dependency, or a module not written yet
            if keys is not None:
                raise
            logger.info("Not training %s: %s", key, exc)
            continue
        available.append(key)
    return sorted(available, key=is_composite)


def holdout_plan() -> HoldoutPlan:
    """The held-out check of every run, from ``TRAINING_HOLDOUT_*`` and the seed."""
    return HoldoutPlan(share=float(settings.TRAINING_HOLDOUT_SHARE), max_users=int(settings.TRAINING_HOLDOUT_MAX_USERS),
                       seed=int(settings.RANDOM_SEED), positive_threshold=settings.TRAINING_POSITIVE_THRESHOLD)
