"""Browser acceptance: a new visitor views 3 products of one category on the real demo pages, and
the home shelf follows (docs/architecture.md, "Placements carry intent").

Headless Chromium (``make browser-deps``) on the seeded demo shop trained with real strategies
(tests/demo_world.py); skipped with a message where Chromium is missing.
"""

import pytest

from recommender.catalog import get_adapter
from recommender.models import Interaction

from .conftest import uses_demo_catalog
from .demo_world import seeded_demo_world
from .serving_support import serve
from .test_browser import ARTIFACTS, browser  # noqa: F401 (the browser fixture)

pytestmark = [pytest.mark.browser, pytest.mark.shop, pytest.mark.slow]

if not uses_demo_catalog():
    pytest.skip("seeds the demo shop; this run uses another host catalog", allow_module_level=True)

from shop_demo.catalog.models import Category, Product  # noqa: E402

K = 8


@pytest.fixture
def demo_world(transactional_db, monkeypatch):
    world = seeded_demo_world()
    serve(monkeypatch, world.models)
    return world


def test_home_follows_three_product_views(browser, live_server, demo_world):  # noqa: F811
    """Three product pages of one category, then home: >= 3 of 8 from it or its complements, a reason names one."""
    from selenium.webdriver.common.by import By

    category = Category.objects.get(name="Running Shoes")
    wanted = {category.name, *demo_world.complementary[category.name]}
    browser.get(live_server.url + "/")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-rec-placement="because_you_viewed"]')
    before = [item.get_attribute("data-rec-item") for item in
              browser.find_elements(By.CSS_SELECTOR, '[data-rec-placement="home"] [data-rec-item]')]

    browser.get(live_server.url + category.get_absolute_url())
    links = [link.get_attribute("href") for link in browser.find_elements(By.CSS_SELECTOR, ".card-title a")]
    product_urls = list(dict.fromkeys(link for link in links if "/p/" in link))[:3]
    assert len(product_urls) == 3
    titles = []
    for url in product_urls:
        browser.get(url)
        titles.append(browser.find_element(By.TAG_NAME, "h1").text)
    # Each product page recorded its view before it answered.
    assert Interaction.objects.filter(event="view", product__in=[int(url.rstrip("/").split("/")[-1])
                                                                 for url in product_urls]).count() >= 3

    browser.get(live_server.url + "/")
    home = browser.find_element(By.CSS_SELECTOR, '[data-rec-placement="home"]')
    items = home.find_elements(By.CSS_SELECTOR, "[data-rec-item]")
    item_ids = [item.get_attribute("data-rec-item") for item in items]
    reasons = [item.find_element(By.CLASS_NAME, "rec-widget__reason").text for item in items]
    categories = [get_adapter().category_of(Product.objects.get(pk=int(item_id))) for item_id in item_ids]
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "home-after-three-views.png"))
    matching = sum(name in wanted for name in categories)
    print(f"browser: home after 3 Running Shoes views: {matching} of {len(items)} from the category or its "
          f"complements (before: {sum(get_adapter().category_of(Product.objects.get(pk=int(i))) in wanted for i in before)})")
    assert len(items) == K and matching >= 3, categories
    assert any(title in reason for reason in reasons for title in titles), (titles, reasons)
    session_shelf = browser.find_element(By.CSS_SELECTOR, '[data-rec-placement="because_you_viewed"]')
    assert session_shelf.find_elements(By.CSS_SELECTOR, "[data-rec-item]")
