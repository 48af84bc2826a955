"""The demo shop as a visitor uses it: browse, search, cart, checkout, sign-up, login, account."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from recommender.models import Interaction, UserProfile
from recommender.signals import cart_changed, order_placed
from tests.conftest import uses_demo_catalog

if not uses_demo_catalog():
    # The demo catalog app is not installed there, so its models cannot even be imported.
    pytest.skip("demo-shop tests; this run uses another host catalog", allow_module_level=True)

from shop_demo.catalog.models import Category, Product  # noqa: E402

pytestmark = [pytest.mark.shop, pytest.mark.django_db]


@pytest.fixture
def shop():
    """Two categories: 30 running shoes (one sold out) and 3 coffee products."""
    running = Category.objects.create(name="Running Shoes")
    coffee = Category.objects.create(name="Coffee & Tea")
    shoes = [
        Product.objects.create(sku=f"RS{n:03d}", name=f"Northpeak Trail Running Shoe {n:02d}", brand="Northpeak",
                               price=Decimal("89.99"), category=running, in_stock=n != 7,
                               description="A grippy trail shoe.")
        for n in range(30)
    ]
    brews = [
        Product.objects.create(sku=f"CT{n:03d}", name=f"Pour-Over Kettle {n}", brand="Brewcraft",
                               price=Decimal("39.50"), category=coffee)
        for n in range(3)
    ]
    return {"running": running, "coffee": coffee, "shoes": shoes, "brews": brews}


@pytest.fixture
def sent():
    """Collects what the shop sends on ``cart_changed`` and ``order_placed``."""
    log = {"cart": [], "orders": []}

    def on_cart(sender, request, product, quantity, **kwargs):
        log["cart"].append((product.pk, quantity))

    def on_order(sender, request, user, items, **kwargs):
        log["orders"].append((user, [(product.pk, quantity) for product, quantity in items]))

    cart_changed.connect(on_cart, dispatch_uid="test-shop-cart")
    order_placed.connect(on_order, dispatch_uid="test-shop-order")
    yield log
    cart_changed.disconnect(dispatch_uid="test-shop-cart")
    order_placed.disconnect(dispatch_uid="test-shop-order")


def _add(client, product, quantity=1):
    return client.post(reverse("cart_add", args=[product.pk]), {"quantity": quantity})


def test_home_shows_departments_and_new_arrivals(client, shop):
    """Home lists every category with products, the newest products and the home widget place."""
    html = client.get(reverse("home")).content.decode()
    assert "Running Shoes" in html and "Coffee &amp; Tea" in html
    assert "Pour-Over Kettle 2" in html  # the newest product
    assert "<!-- recommendation widget: home -->" in html


def test_base_layout_loads_the_beacon_and_stylesheet(client, shop):
    """Every page loads the recommender's beacon with the events endpoint, and the shop's CSS."""
    html = client.get(reverse("home")).content.decode()
    assert 'src="/static/recommender/beacon.js" data-rec-endpoint="/api/events/"' in html
    assert "/static/shop_demo/shop.css" in html
    assert 'name="csrf-token"' in html


def test_category_page_paginates(client, shop):
    """A category of 30 products shows 24 on page one and the rest on page two, in name order."""
    url = shop["running"].get_absolute_url()
    first = client.get(url)
    assert len(first.context["page"].object_list) == 24
    second = client.get(url, {"page": 2})
    assert [p.name for p in second.context["page"].object_list][-1] == "Northpeak Trail Running Shoe 29"
    assert "Pour-Over Kettle" not in first.content.decode()


def test_category_page_sorts_and_filters_stock(client, shop):
    """In-stock filtering drops the sold-out shoe; sorting by price high-to-low is accepted."""
    response = client.get(shop["running"].get_absolute_url(), {"in_stock": "1", "sort": "-price"})
    assert response.context["page"].paginator.count == 29
    assert "in_stock=1" in response.content.decode()  # pagination keeps the filter


def test_product_page_records_a_view_and_marks_widget_places(client, shop):
    """Opening a product records one view for the visitor and marks both product widget places."""
    product = shop["shoes"][3]
    html = client.get(product.get_absolute_url()).content.decode()
    assert f'data-rec-view-item="{product.pk}"' in html
    assert "<!-- recommendation widget: similar -->" in html
    assert "<!-- recommendation widget: also_bought -->" in html
    views = Interaction.objects.filter(product=product, event="view")
    assert views.count() == 1 and views.get().visitor_key


def test_missing_product_is_404(client, shop):
    """An unknown product id is a 404, not an error."""
    assert client.get(reverse("product", args=[999_999])).status_code == 404


def test_search_matches_name_brand_and_category(client, shop):
    """Search finds by product name, by brand and by category, and says when nothing matches."""
    assert client.get(reverse("search"), {"q": "kettle"}).context["page"].paginator.count == 3
    assert client.get(reverse("search"), {"q": "brewcraft"}).context["page"].paginator.count == 3
    assert client.get(reverse("search"), {"q": "running northpeak"}).context["page"].paginator.count == 30
    assert "Nothing matches" in client.get(reverse("search"), {"q": "submarine"}).content.decode()


def test_cart_add_update_remove_send_quantity_changes(client, shop, sent):
    """Adding, changing and removing a line each send cart_changed with the change in quantity."""
    shoe = shop["shoes"][0]
    _add(client, shoe, 2)
    client.post(reverse("cart_update", args=[shoe.pk]), {"quantity": 5})
    assert client.get(reverse("cart")).context["cart_count"] == 5
    client.post(reverse("cart_remove", args=[shoe.pk]))
    assert sent["cart"] == [(shoe.pk, 2), (shoe.pk, 3), (shoe.pk, -5)]
    assert "Your cart is empty" in client.get(reverse("cart")).content.decode()


def test_cart_shows_lines_total_and_widget_place(client, shop):
    """The cart lists each line with its subtotal, the total, and the cart widget place."""
    _add(client, shop["shoes"][0], 2)
    _add(client, shop["brews"][0], 1)
    response = client.get(reverse("cart"))
    assert response.context["total"] == Decimal("219.48")
    html = response.content.decode()
    assert "€179.98" in html and "<!-- recommendation widget: cart -->" in html


def test_out_of_stock_product_cannot_be_added(client, shop, sent):
    """A sold-out product is refused with a message and nothing is sent."""
    response = _add(client, shop["shoes"][7])
    assert response.status_code == 302
    assert sent["cart"] == []
    assert "out of stock" in client.get(reverse("cart")).content.decode()


def test_bad_quantity_is_refused(client, shop, sent):
    """A quantity outside 1–20 adds nothing."""
    _add(client, shop["shoes"][0], 0)
    _add(client, shop["shoes"][0], 500)
    assert sent["cart"] == []


def test_cart_add_ignores_an_outside_next_url(client, shop):
    """``next`` pointing to another site is ignored (no open redirect)."""
    response = client.post(reverse("cart_add", args=[shop["shoes"][0].pk]), {"quantity": 1, "next": "https://evil.example/"})
    assert response["Location"] == reverse("cart")


def test_checkout_places_an_order_and_records_purchases(client, shop, sent):
    """Placing an order sends order_placed once, records purchases, empties the cart and confirms."""
    shoe, kettle = shop["shoes"][1], shop["brews"][2]
    _add(client, shoe, 1)
    _add(client, kettle, 2)
    assert client.get(reverse("checkout")).status_code == 200
    response = client.post(reverse("checkout"))
    assert response["Location"] == reverse("order_confirmation")
    assert sent["orders"] == [(None, [(shoe.pk, 1), (kettle.pk, 2)])]
    purchases = Interaction.objects.filter(event="purchase")
    assert sorted(purchases.values_list("product_id", "value")) == sorted([(shoe.pk, 1.0), (kettle.pk, 2.0)])
    confirmation = client.get(reverse("order_confirmation")).content.decode()
    assert "Thank you for your order" in confirmation and "€168.99" in confirmation
    assert client.get(reverse("cart")).context["cart_count"] == 0


def test_checkout_with_an_empty_cart_goes_back_to_the_cart(client, shop, sent):
    """An empty cart cannot be checked out and sends nothing."""
    assert client.get(reverse("checkout"))["Location"] == reverse("cart")
    assert client.post(reverse("checkout"))["Location"] == reverse("cart")
    assert sent["orders"] == []


def test_signup_with_profile_saves_it_logs_in_and_keeps_the_visit(client, shop):
    """Sign-up stores the profile (age becomes a birth year), logs in, and keeps earlier views."""
    client.get(shop["shoes"][0].get_absolute_url())
    response = client.post(reverse("signup"), {
        "username": "maria", "email": "maria@example.com",
        "password1": "a-long-pass-123", "password2": "a-long-pass-123",
        "profile-age_or_birth_year": "34", "profile-gender": "f",
        "profile-country": "Germany", "profile-city": "Berlin", "profile-personalization_consent": "on",
    })
    assert response.status_code == 302
    user = get_user_model().objects.get(username="maria")
    profile = UserProfile.objects.get(user=user)
    assert (profile.gender, profile.country, profile.city, profile.age) == ("f", "Germany", "Berlin", 34)
    assert profile.personalization_consent
    assert client.get(reverse("account")).context["user"] == user
    assert Interaction.objects.get(event="view").user == user


def test_signup_profile_is_optional_and_accepts_a_birth_year(client, shop):
    """Leaving the profile blank still creates an account; a birth year is stored as given."""
    client.post(reverse("signup"), {
        "username": "sam", "email": "sam@example.com", "password1": "a-long-pass-123", "password2": "a-long-pass-123",
    })
    assert UserProfile.objects.get(user__username="sam").birth_year is None
    client.post(reverse("logout"))
    client.post(reverse("signup"), {
        "username": "lee", "email": "lee@example.com", "password1": "a-long-pass-123", "password2": "a-long-pass-123",
        "profile-age_or_birth_year": "1990",
    })
    assert UserProfile.objects.get(user__username="lee").birth_year == 1990


def test_signup_refuses_an_impossible_age(client, shop):
    """An age like 500 is a form error naming the field, and no account is created."""
    response = client.post(reverse("signup"), {
        "username": "old", "email": "old@example.com", "password1": "a-long-pass-123", "password2": "a-long-pass-123",
        "profile-age_or_birth_year": "500",
    })
    assert response.status_code == 200
    assert "age_or_birth_year" in response.context["profile_form"].errors
    assert not get_user_model().objects.filter(username="old").exists()


def test_login_and_logout(client, shop):
    """A user logs in with the login page and out with a POST (a GET does not log out)."""
    get_user_model().objects.create_user("ana", "ana@example.com", "a-long-pass-123")
    response = client.post(reverse("login"), {"username": "ana", "password": "a-long-pass-123"})
    assert response.status_code == 302
    assert "ana" in client.get(reverse("home")).content.decode()
    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))
    assert client.get(reverse("account"))["Location"].startswith(reverse("login"))


def test_account_page_toggles_personalisation_consent(client, shop):
    """Unticking the consent box on the account page withdraws personalisation consent."""
    user = get_user_model().objects.create_user("kim", "kim@example.com", "a-long-pass-123")
    client.force_login(user)
    client.post(reverse("account"), {"profile-country": "France", "profile-gender": ""})
    profile = UserProfile.objects.get(user=user)
    assert profile.personalization_consent is False and profile.country == "France"
    client.post(reverse("account"), {"profile-country": "France", "profile-personalization_consent": "on"})
    assert UserProfile.objects.get(user=user).personalization_consent is True


def test_account_lists_recent_purchases(client, shop):
    """After an order, the account page lists the purchased product."""
    user = get_user_model().objects.create_user("jo", "jo@example.com", "a-long-pass-123")
    client.force_login(user)
    _add(client, shop["brews"][1], 1)
    client.post(reverse("checkout"))
    assert "Pour-Over Kettle 1" in client.get(reverse("account")).content.decode()


def test_seed_demo_fills_an_empty_shop_once(shop_free_db, capsys):
    """seed_demo imports a small synthetic shop and the admin user; --if-empty then adds nothing."""
    call_command("seed_demo", users=40, products=60, categories=8, events=1500, seed=2)
    assert Product.objects.count() == 60 and Category.objects.count() == 8
    assert Interaction.objects.count() == 1500
    assert get_user_model().objects.get(username="admin").is_superuser
    call_command("seed_demo", if_empty=True, users=40, products=70, categories=8, events=1500)
    assert Product.objects.count() == 60
    assert "admin" in capsys.readouterr().out


@pytest.fixture
def shop_free_db(db):
    assert not Product.objects.exists()


def test_widgets_render_in_the_shops_look(client, shop):
    """The shop's widget template (product tiles, reason, beacon attributes) replaces the app's default."""
    client.post(reverse("cart_add", args=[shop["brews"][0].pk]), {"quantity": 1})
    client.post(reverse("checkout"))
    html = Client().get(reverse("home")).content.decode()
    assert 'data-rec-placement="home"' in html
    assert 'class="card rec-widget__item" data-rec-item=' in html
    assert 'class="rec-widget__reason"' in html and "recommender/recommender.css" not in html


def test_the_consent_box_starts_unticked_at_sign_up(client, shop):
    """The personalisation consent box is not ticked for the shopper; a shop may choose otherwise."""
    from django.conf import settings as django_settings
    from django.test import override_settings

    form = client.get(reverse("signup")).context["profile_form"]
    assert form["personalization_consent"].value() is False
    assert "checked" not in str(form["personalization_consent"])
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "PERSONALIZATION_CONSENT_DEFAULT": True}):
        form = client.get(reverse("signup")).context["profile_form"]
    assert "checked" in str(form["personalization_consent"])


def test_signing_up_without_ticking_consent_stores_no_consent(client, shop):
    """Leaving the box as it is means no consent."""
    client.post(reverse("signup"), {
        "username": "nico", "email": "nico@example.com", "password1": "a-long-pass-123", "password2": "a-long-pass-123",
    })
    assert UserProfile.objects.get(user__username="nico").personalization_consent is False


def test_the_privacy_page_exports_and_erases(client, shop):
    """The account page links a download of the shopper's data and an erase that asks first, then erases."""
    user = get_user_model().objects.create_user("eve", "eve@example.com", "a-long-pass-123")
    client.force_login(user)
    client.get(shop["shoes"][0].get_absolute_url())
    page = client.get(reverse("account")).content.decode()
    assert reverse("recommender:api:profile_export") in page and reverse("account_erase") in page
    exported = client.get(reverse("recommender:api:profile_export"))
    assert "attachment" in exported["Content-Disposition"]
    assert [event["event"] for event in exported.json()["events"]] == ["view"]
    assert "cannot be undone" in client.get(reverse("account_erase")).content.decode()
    assert Interaction.objects.filter(user=user).exists(), "the confirmation page erases nothing"
    response = client.post(reverse("account_erase"), follow=True)
    assert "Erased your profile" in response.content.decode()
    assert not Interaction.objects.filter(user=user).exists()
    assert get_user_model().objects.filter(pk=user.pk).exists()
