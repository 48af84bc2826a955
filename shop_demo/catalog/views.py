"""Pages of the demo shop. Thin: lists come from queries.py, the cart and orders from cart.py."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from recommender import events, privacy
from recommender.models import UserProfile

from . import queries
from .cart import LAST_ORDER_SESSION_KEY, Cart, place_order
from .forms import COUNTRIES, ProfileForm, QuantityForm, SignUpForm
from .models import Category, Product

PRODUCTS_PER_PAGE = 24


def home(request):
    return render(request, "catalog/home.html", {
        "bestsellers": queries.bestsellers(),
        "new_arrivals": queries.new_arrivals(),
        "category_tiles": queries.categories_with_counts(),
    })


def category(request, slug):
    category = get_object_or_404(Category, slug=slug)
    sort = request.GET.get("sort", "name")
    listing = queries.sorted_products(queries.products().filter(category=category), sort)
    if request.GET.get("in_stock"):
        listing = listing.filter(in_stock=True)
    page = Paginator(listing, PRODUCTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "catalog/category.html", {
        "category": category, "page": page, "sort": sort, "page_query": _page_query(request),
    })


def product(request, pk):
    product = get_object_or_404(queries.products(), pk=pk)
    # The server saw this page being served: a server event (the beacon adds the dwell time).
    events.record_for_request(request, [{"product": product, "event": "view"}], trust=events.SERVER)
    return render(request, "catalog/product.html", {
        "product": product,
        "in_cart": Cart(request).quantity_of(product),
        "more_from_category": queries.more_from_category(product),
    })


def search(request):
    query = request.GET.get("q", "").strip()
    results = queries.sorted_products(queries.search(query), request.GET.get("sort", "name")) if query else Product.objects.none()
    page = Paginator(results, PRODUCTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "catalog/search.html", {"query": query, "page": page, "page_query": _page_query(request)})


def cart_detail(request):
    cart = Cart(request)
    lines = cart.lines()
    return render(request, "catalog/cart.html", {"lines": lines, "total": cart.total(lines)})


@require_POST
def cart_add(request, pk):
    product = get_object_or_404(Product, pk=pk)
    form = QuantityForm(request.POST)
    if not product.in_stock:
        messages.error(request, f"Sorry, {product.name} is out of stock.")
    elif form.is_valid() and form.cleaned_data["quantity"] > 0:
        Cart(request).add(product, form.cleaned_data["quantity"])
        messages.success(request, f"Added {product.name} to your cart.")
    else:
        messages.error(request, "Choose a quantity between 1 and 20.")
    return redirect(_next_url(request, "cart"))


@require_POST
def cart_update(request, pk):
    product = get_object_or_404(Product, pk=pk)
    form = QuantityForm(request.POST)
    if form.is_valid():
        Cart(request).set(product, form.cleaned_data["quantity"])
    else:
        messages.error(request, "Choose a quantity between 0 and 20.")
    return redirect("cart")


@require_POST
def cart_remove(request, pk):
    product = get_object_or_404(Product, pk=pk)
    Cart(request).remove(product)
    messages.info(request, f"Removed {product.name} from your cart.")
    return redirect("cart")


def checkout(request):
    cart = Cart(request)
    if request.method == "POST":
        if place_order(request, cart) is None:
            messages.error(request, "Your cart has nothing that can be ordered.")
            return redirect("cart")
        return redirect("order_confirmation")
    lines = cart.lines()
    if not lines:
        return redirect("cart")
    return render(request, "catalog/checkout.html", {"lines": lines, "total": cart.total(lines)})


def order_confirmation(request):
    receipt = request.session.get(LAST_ORDER_SESSION_KEY)
    if receipt is None:
        return redirect("home")
    return render(request, "catalog/order_confirmation.html", {"receipt": receipt})


def signup(request):
    if request.user.is_authenticated:
        return redirect("account")
    user_form = SignUpForm(request.POST or None)
    profile_form = ProfileForm(request.POST or None, prefix="profile")
    if request.method == "POST" and user_form.is_valid() and profile_form.is_valid():
        with transaction.atomic():
            user = user_form.save()
            profile_form.instance.user = user
            profile_form.save()
            # Logging in merges the anonymous visitor's history and profile into the account.
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Your account is ready.")
        return redirect(_next_url(request, "home"))
    return render(request, "registration/signup.html", {
        "user_form": user_form, "profile_form": profile_form, "countries": COUNTRIES,
    })


@login_required
def account(request):
    profile, _ = UserProfile.objects.get_or_create(user=request.user)
    form = ProfileForm(request.POST or None, instance=profile, prefix="profile")
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your profile and privacy choices are saved.")
        return redirect("account")
    return render(request, "account/account.html", {
        "profile_form": form, "countries": COUNTRIES,
        "recent_purchases": queries.recent_purchases(request.user),
    })


@login_required
def account_erase(request):
    """Erase the shopper's profile, ratings and events (the account stays), after a confirmation page."""
    if request.method == "POST":
        erased = privacy.erase_user_data(user=request.user)
        messages.success(request, f"Erased your profile, {erased['ratings']} ratings and {erased['events']} "
                                  "recorded actions. Your account and orders stay.")
        return redirect("account")
    return render(request, "account/erase.html")


def _next_url(request, default):
    """The ``next`` parameter when it points back into this shop, else ``default``."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


def _page_query(request):
    """The current query string without ``page``, ready to prefix ``page=N``."""
    params = request.GET.copy()
    params.pop("page", None)
    return f"{params.urlencode()}&" if params else ""
