"""The recommender in a django-oscar shop.

Add ``"recommender.contrib.oscar"`` to ``INSTALLED_APPS`` after Oscar's apps and ``recommender``,
and point the app at Oscar's catalogue (``docs/oscar.md`` has every step)::

    RECOMMENDER_PRODUCT_MODEL = "catalogue.Product"
    RECOMMENDER = {"CATALOG_ADAPTER": "recommender.contrib.oscar.catalog.OscarCatalogAdapter"}

What it brings:

- ``catalog.OscarCatalogAdapter``: parent and standalone products only (never child variants),
  availability and price from stock records through the strategy Oscar's ``Selector`` returns,
  categories through the product–category relation, brand from a product attribute;
- ``receivers``: Oscar's ``product_viewed``, ``basket_addition``, ``order_placed`` /
  ``post_checkout`` and ``user_registered`` signals become the app's events;
- templates: shelves for Oscar's home (catalogue) page, product page and basket, rendered as
  Oscar product cards with their reason, and ready overrides of Oscar's templates in
  ``TEMPLATE_OVERRIDES_DIR`` (add it to ``TEMPLATES[0]["DIRS"]``, or include the snippets from your own
  overrides);
- ``manage.py recommender_oscar_history``: loads the shop's past orders as purchase history.
"""

from pathlib import Path

# Templates that extend Oscar's own by the same name (catalogue/browse.html, catalogue/detail.html,
# basket/basket.html, layout.html) to add the shelves and the beacon. Not an app template folder:
# an app listed after Oscar could not override Oscar's templates, so the shop opts in by adding
# this folder to TEMPLATES[0]["DIRS"].
TEMPLATE_OVERRIDES_DIR = Path(__file__).resolve().parent / "overrides"
