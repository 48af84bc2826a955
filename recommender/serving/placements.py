"""Placements (where a shelf is shown) and their strategy chains, from configuration.

``RECOMMENDER["PLACEMENTS"]`` holds one dict per placement; a host's dict is merged key by key
over the built-in one, and a placement nobody configured gets the defaults of an empty dict.
The known keys are read into ``Placement``'s fields; any other key is kept in ``options`` for
the steps that read it (see docs/settings.md and docs/architecture.md, "Adding a placement").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..conf import DEFAULTS, settings

DEFAULT_TITLE = "You may also like"
KNOWN_KEYS = ("title", "strategies", "similar_to_product", "exclude_events", "max_category_share", "blend",
              "fall_back", "needs_events")


@dataclass(frozen=True)
class Placement:
    """One placement's configuration, with every default filled in.

    ``strategies`` are tried first, then the visitor's strategy (a forced key, the A/B arm or
    ``DEFAULT_STRATEGY``), then ``FALLBACK_STRATEGIES`` (see ``strategy_chain``).
    """

    name: str
    title: str = DEFAULT_TITLE
    strategies: tuple[str, ...] = ()
    similar_to_product: bool = False
    exclude_events: tuple[str, ...] = ()
    max_category_share: float = 0.5
    # The placement family whose learned blend a composite strategy serves (the hybrid's blends).
    blend: str | None = None
    # False: only the placement's own strategies, never the visitor's, the fallbacks nor database
    # popularity (a shelf whose intent popularity cannot serve shows nothing instead).
    fall_back: bool = True
    # True: shown only to a visitor with session events (the widget renders nothing before).
    needs_events: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def strategy_chain(self, visitor_strategy: str, fallbacks) -> list[str]:
        """The keys to try in order, each once: own strategies, the visitor's, the fallbacks."""
        if not self.fall_back:
            return list(dict.fromkeys(self.strategies))
        return list(dict.fromkeys([*self.strategies, visitor_strategy, *fallbacks]))


def configured(name: str) -> dict:
    """The merged configuration dict of placement ``name`` (built-in defaults, then the host's)."""
    built_in = DEFAULTS["PLACEMENTS"].get(name, {})
    host = (settings.PLACEMENTS or {}).get(name) or {}
    return {**built_in, **host}


def get_placement(name: str) -> Placement:
    """The ``Placement`` called ``name``; raises ``ValueError`` naming the bad key of a broken entry."""
    entry = configured(name)
    strategies = entry.get("strategies") or ()
    if isinstance(strategies, str) or not all(isinstance(key, str) for key in strategies):
        raise ValueError(f"RECOMMENDER['PLACEMENTS'][{name!r}]['strategies'] must be a list of strategy keys, "
                         f"got {strategies!r}")
    exclude_events = entry.get("exclude_events") or ()
    if isinstance(exclude_events, str):
        raise ValueError(f"RECOMMENDER['PLACEMENTS'][{name!r}]['exclude_events'] must be a list of event types")
    share = entry.get("max_category_share", settings.MAX_CATEGORY_SHARE)
    share = 1.0 if share is None else float(share)
    if not 0 < share <= 1:
        raise ValueError(f"RECOMMENDER['PLACEMENTS'][{name!r}]['max_category_share'] must be in (0, 1], got {share}")
    return Placement(
        name=name,
        title=str(entry.get("title") or DEFAULT_TITLE),
        strategies=tuple(strategies),
        similar_to_product=bool(entry.get("similar_to_product", False)),
        exclude_events=tuple(exclude_events),
        max_category_share=share,
        blend=None if entry.get("blend") is None else str(entry["blend"]),
        fall_back=bool(entry.get("fall_back", True)),
        needs_events=bool(entry.get("needs_events", False)),
        options={key: value for key, value in entry.items() if key not in KNOWN_KEYS},
    )


def placement_names() -> list[str]:
    """Every configured placement (built-in and the host's)."""
    return list(dict.fromkeys([*DEFAULTS["PLACEMENTS"], *(settings.PLACEMENTS or {})]))
