"""The admin's recommendation preview: every strategy's top-k for one context, side by side.

The context is a real user's (profile and recent events, as serving would build it) or a
made-up visitor typed in by staff (profile attributes and a few products as recent views).
Only active versions are used, as serving does; a strategy without one is "not trained".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth import get_user_model

from .catalog import get_adapter
from .conf import settings
from .serving import loaded_models
from .serving.candidates import DATABASE_POPULARITY
from .serving.context import context_builder, visitor_context
from .serving.placements import get_placement
from .serving.visitor import Visitor
from .strategies import registry
from .strategies.base import Context, Event
from .strategies.hybrid import HybridStrategy

logger = logging.getLogger(__name__)


class PreviewError(ValueError):
    """The preview's input names a user or products that do not exist."""


@dataclass
class PreviewRow:
    item_id: str
    title: str
    score: float
    reason: str
    contributions: dict[str, float] = field(default_factory=dict)


@dataclass
class StrategyPreview:
    """One strategy's column: its list, or why there is none."""

    key: str
    version_id: int | None = None
    rows: list[PreviewRow] = field(default_factory=list)
    problem: str = ""


@dataclass
class Preview:
    context: Context
    columns: list[StrategyPreview]
    served_by: str
    hybrid: StrategyPreview | None
    hybrid_components: list[str]
    hybrid_weights: dict


def context_for_user(user_pk) -> Context:
    """The context serving builds for an account: profile (with consent) and recent events."""
    user = get_user_model()._default_manager.filter(pk=user_pk).first()
    if user is None:
        raise PreviewError(f"There is no user with id {user_pk}.")
    return visitor_context(Visitor(user=user))


def context_for_visitor(profile: dict, product_ids: list[str]) -> Context:
    """A made-up new visitor: ``profile`` attributes and ``product_ids`` as views, in order."""
    adapter = get_adapter()
    try:
        pks = [adapter.pk_from_string(product_id) for product_id in product_ids]
    except Exception as exc:
        raise PreviewError(f"Not a product id: {exc}") from exc
    found = {str(pk) for pk in adapter.queryset().filter(pk__in=pks).values_list("pk", flat=True)}
    missing = [str(pk) for pk in pks if str(pk) not in found]
    if missing:
        raise PreviewError(f"No product with id {', '.join(missing)}.")
    profile = {key: value for key, value in profile.items() if value not in (None, "")}
    return context_builder().build(profile=profile, events=[Event(item_id=str(pk), event="view") for pk in pks])


def build_preview(context: Context, k: int = 10) -> Preview:
    """Every registered strategy's top ``k`` for ``context`` (active versions only)."""
    exclude = set(context.event_item_ids)
    keys = registry.available_keys(settings.STRATEGIES)
    columns = [_column(key, context, k, exclude) for key in keys]
    by_key = {column.key: column for column in columns}
    served_by = next((key for key in _home_chain() if _would_serve(by_key.get(key), key, context)),
                     DATABASE_POPULARITY)
    hybrid, components, weights = by_key.get(HybridStrategy.key), [], {}
    model = loaded_models.get_active_strategy(HybridStrategy.key) if hybrid and hybrid.rows else None
    if isinstance(model, HybridStrategy):  # the hybrid column shows its components' parts
        components, weights = _explain_hybrid(model, context, hybrid)
    titles = _titles([row.item_id for column in columns for row in column.rows])
    for column in columns:
        for row in column.rows:
            row.title = titles.get(row.item_id, row.item_id)
    return Preview(context=context, columns=columns, served_by=served_by, hybrid=hybrid,
                   hybrid_components=components, hybrid_weights=weights)


def _home_chain() -> list[str]:
    """The strategies serving tries on the home placement for a visitor with consent."""
    return get_placement("home").strategy_chain(settings.DEFAULT_STRATEGY, settings.FALLBACK_STRATEGIES)


def _would_serve(column: StrategyPreview | None, key: str, context: Context) -> bool:
    """Whether serving would take ``key``'s list for ``context``: it has one, and events if it needs them."""
    if column is None or column.version_id is None or not column.rows:
        return False
    return bool(context.events) or not registry.get_strategy_class(key, settings.STRATEGIES).needs_events


def _column(key: str, context: Context, k: int, exclude: set[str]) -> StrategyPreview:
    try:
        model = loaded_models.get_active_strategy(key)
    except Exception as exc:  # a broken artifact must not take the preview page down
        logger.exception("Preview: the active %s version cannot be loaded", key)
        return StrategyPreview(key=key, problem=f"cannot be loaded: {exc}")
    if model is None:
        return StrategyPreview(key=key, problem="not trained")
    column = StrategyPreview(key=key, version_id=getattr(model, "version_id", None))
    try:
        ranked = model.recommend(context, k=k, exclude=exclude)
    except Exception as exc:
        logger.exception("Preview: %s failed to recommend", key)
        column.problem = f"failed: {exc}"
        return column
    column.rows = [PreviewRow(item_id=item_id, title="", score=float(score), reason=reason)
                   for item_id, score, reason in ranked]
    return column


def _explain_hybrid(model, context: Context, hybrid: StrategyPreview) -> tuple[list[str], dict]:
    """Fill each hybrid row's per-component contributions; return the component keys and weights."""
    contributions = model.explain_scores(context)
    components = [key for key in contributions if key != "hybrid"]
    positions = model.item_positions([row.item_id for row in hybrid.rows])
    for row, position in zip(hybrid.rows, positions):
        if position >= 0:
            row.contributions = {key: _finite(contributions[key][position]) for key in components}
    return components, model.weights_table()


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _titles(item_ids: list[str]) -> dict[str, str]:
    adapter = get_adapter()
    pks = {}
    for item_id in set(item_ids):
        try:
            pks[adapter.pk_from_string(item_id)] = item_id
        except Exception:
            continue
    products = adapter.queryset().in_bulk(list(pks))
    return {pks[pk]: adapter.title_of(product) for pk, product in products.items()}
