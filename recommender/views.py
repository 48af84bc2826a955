"""Server-rendered views of the app (thin: the work is in ``service`` and ``events``)."""

from django import forms
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from . import events, service
from .conf import settings


class OnboardingForm(forms.Form):
    """The products a new visitor picked from the onboarding strip."""

    product = forms.MultipleChoiceField(error_messages={"required": "Pick at least one product."})

    def __init__(self, *args, products=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product"].choices = [(str(product.pk), str(product)) for product in products]


@require_http_methods(["GET", "POST"])
def onboarding(request):
    """Show the onboarding picks; a POST records each pick as a click and goes back."""
    products = service.onboarding_items(settings.ONBOARDING_SIZE)
    form = OnboardingForm(request.POST or None, products=products)
    if request.method == "POST" and form.is_valid():
        # Server events: the server chose the event type, the placement and the products offered
        # (the form accepts only those); the visitor only picked among them.
        events.record_for_request(
            request, [{"product": pk, "event": "click", "placement": "onboarding"} for pk in form.cleaned_data["product"]],
            trust=events.SERVER,
        )
        return redirect(_next_url(request))
    items = [service.onboarding_item(product) for product in products]
    errors = [error for errors in form.errors.values() for error in errors]
    return render(request, "recommender/onboarding_page.html", {"items": items, "errors": errors},
                  status=400 if form.errors else 200)


def _next_url(request):
    url = request.POST.get("next") or "/"
    if url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return url
    return "/"
