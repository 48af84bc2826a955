"""Template tags for showing recommendations on shop pages.

``{% load recommender_tags %}`` then either::

    {% recommendations "home" limit=8 as recs %}            {# a ServedRecommendations #}
    {% recommendation_widget "similar" product=product %}   {# rendered markup #}

The widget renders ``recommender/widget_<placement>.html`` if the host has one, else
``recommender/widget.html`` (templates are namespaced and overridable, as Oscar's are). Its markup carries ``data-rec-*`` attributes
that the beacon reads to record impressions and clicks with placement, strategy and arm.
"""

import logging

from django import template
from django.template.loader import select_template

from .. import service
from ..conf import settings

logger = logging.getLogger(__name__)
register = template.Library()


# Products an earlier shelf of this page shows (kept on the request): a later shelf leaves them out,
# so "Picked for you" and "Inspired by what you viewed" never repeat each other on one page.
SHOWN_ON_PAGE = "_recommender_shown_on_page"


def _shown_on_page(request) -> set:
    if request is None:
        return set()
    if not hasattr(request, SHOWN_ON_PAGE):
        setattr(request, SHOWN_ON_PAGE, set())
    return getattr(request, SHOWN_ON_PAGE)


def _serve(context, placement, product, limit, strategy=None):
    request = context.get("request")
    shown = _shown_on_page(request)
    try:
        served = service.recommend(request=request, placement=placement, product=product, k=int(limit),
                                   strategy=strategy or None, exclude=shown)
        shown.update(served.item_ids)
        return served
    except Exception:
        # A broken recommendation must never take the shop page down with it.
        logger.exception("Recommendations for placement %r failed", placement)
        return service.ServedRecommendations(items=[], strategy="", placement=placement, title=_title_of(placement))


def _title_of(placement):
    try:
        return service.get_placement(placement).title
    except Exception:  # a broken PLACEMENTS entry: the system check names it
        return service.DEFAULT_TITLE


@register.simple_tag(takes_context=True)
def recommendations(context, placement="home", product=None, limit=8, strategy=None):
    """Return the recommendations for ``placement`` (use with ``as``)."""
    return _serve(context, placement, product, limit, strategy)


@register.simple_tag(takes_context=True)
def recommendation_widget(context, placement="home", product=None, limit=8, title=None, strategy=None):
    """Render the widget for ``placement`` from the most specific template that exists."""
    recs = _serve(context, placement, product, limit, strategy)
    widget = select_template([f"recommender/widget_{placement}.html", "recommender/widget.html"])
    return widget.render(
        {"recs": recs, "placement": placement, "title": title or recs.title, "product": product},
        context.get("request"),
    )


@register.simple_tag(takes_context=True)
def onboarding_strip(context, limit=None):
    """Render the "Tell us what you like" strip for a visitor with no history yet (else nothing)."""
    request = context.get("request")
    if request is None or not service.needs_onboarding(request):
        return ""
    products = service.onboarding_items(limit or settings.ONBOARDING_SIZE)
    items = [service.onboarding_item(product) for product in products]
    return select_template(["recommender/onboarding.html"]).render({"items": items}, request)
