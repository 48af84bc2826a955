"""Browser test: headless Chromium opens the demo shop, sees widgets with reasons, and a click is recorded.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser-deps``); skipped with a message
where they are missing.
"""

import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from recommender import events
from recommender.versions import run
from recommender.models import Interaction, UserProfile
from recommender.serving import loaded_models

from .serving_support import make_catalog

pytestmark = [pytest.mark.browser, pytest.mark.shop, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT_SECONDS = 15


def chromium_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return browser, driver


@pytest.fixture
def browser():
    browser_path, driver_path = chromium_paths()
    if not (browser_path and driver_path):
        pytest.skip("headless Chromium not installed: run `make browser-deps` "
                    "(apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-test.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def trained_shop(transactional_db, settings, tmp_path):
    """A small catalog with planted purchases and trained, active popularity models."""
    settings.MEDIA_ROOT = tmp_path / "media"
    loaded_models.forget_loaded_models()
    products = make_catalog(per_category=6)
    for number in range(12):
        user = get_user_model().objects.create_user(f"shopper{number}", password="pw-123456")
        UserProfile.objects.create(user=user, gender="fm"[number % 2], birth_year=1990)
        bought = products[(number % 2) * 12: (number % 2) * 12 + 4]
        events.record([{"product": product.pk, "event": "purchase"} for product in bought], user=user)
    for key in ("popularity", "segment_popularity"):
        version = run.train_strategy(key)
        assert version.status == "active", version.error
    yield products
    loaded_models.forget_loaded_models()


def wait_for(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(condition)


def test_widgets_show_reasons_and_a_click_is_recorded(browser, live_server, trained_shop):
    """Home and product pages show widgets with items and reasons; clicking an item stores a click event."""
    from selenium.webdriver.common.by import By

    browser.get(live_server.url + "/")
    widget = browser.find_element(By.CSS_SELECTOR, '[data-rec-placement="home"]')
    items = widget.find_elements(By.CSS_SELECTOR, "[data-rec-item]")
    assert items, "the home widget shows no items"
    assert all(item.find_element(By.CLASS_NAME, "rec-widget__reason").text for item in items)
    served_by = widget.get_attribute("data-rec-strategy")
    assert served_by in {"popularity", "segment_popularity"}

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "home-recommendations.png"))

    clicked = items[0].get_attribute("data-rec-item")
    items[0].find_element(By.TAG_NAME, "a").click()
    wait_for(browser, lambda driver: "/p/" in driver.current_url or driver.current_url.rstrip("/") != live_server.url)
    stored = wait_for(browser, lambda driver: Interaction.objects.filter(
        event="click", placement="home", product_id=clicked).first())
    assert stored.strategy == served_by

    similar = wait_for(browser, lambda driver: driver.find_elements(By.CSS_SELECTOR, '[data-rec-placement="similar"]'))
    similar_items = similar[0].find_elements(By.CSS_SELECTOR, "[data-rec-item]")
    assert similar_items and clicked not in {item.get_attribute("data-rec-item") for item in similar_items}
    assert all(item.find_element(By.CLASS_NAME, "rec-widget__reason").text for item in similar_items)
    browser.save_screenshot(str(ARTIFACTS / "product-recommendations.png"))

