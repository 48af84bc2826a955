"""Forms of the demo shop: cart quantities, sign-up and the optional shopper profile."""

import datetime

from django import forms
from django.contrib.auth.forms import UserCreationForm

from recommender.conf import settings as recommender_settings
from recommender.models import Gender, UserProfile

from .cart import MAX_QUANTITY

COUNTRIES = (
    "Canada", "France", "Germany", "Italy", "Netherlands", "Poland", "Spain", "Sweden",
    "United Kingdom", "United States",
)


class QuantityForm(forms.Form):
    quantity = forms.IntegerField(min_value=0, max_value=MAX_QUANTITY, initial=1)


class SignUpForm(UserCreationForm):
    email = forms.EmailField(required=True, help_text="For order confirmations. We never share it.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


class ProfileForm(forms.ModelForm):
    """What a shopper may tell us to get better suggestions; every field is optional."""

    age_or_birth_year = forms.IntegerField(
        label="Age or year of birth", required=False,
        help_text="Either works: 34 or 1991.",
        widget=forms.NumberInput(attrs={"placeholder": "e.g. 34 or 1991"}),
    )
    country = forms.CharField(
        required=False, max_length=64,
        widget=forms.TextInput(attrs={"list": "country-choices", "placeholder": "e.g. Germany"}),
    )
    city = forms.CharField(required=False, max_length=64, widget=forms.TextInput(attrs={"placeholder": "e.g. Berlin"}))

    field_order = ("age_or_birth_year", "gender", "country", "city", "personalization_consent")

    class Meta:
        model = UserProfile
        fields = ("gender", "country", "city", "personalization_consent")
        labels = {"personalization_consent": "Personalise my recommendations"}
        help_texts = {
            "personalization_consent": "Use my profile and what I browse to pick products for me. "
                                       "Without it you see what is popular with everyone."
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["gender"].choices = Gender.choices
        if self.instance.pk is None:
            # Consent is given, not un-given: the box starts as the shop chose (unticked by default).
            self.initial["personalization_consent"] = recommender_settings.PERSONALIZATION_CONSENT_DEFAULT
        if self.instance.birth_year and not self.is_bound:
            self.initial["age_or_birth_year"] = self.instance.birth_year

    def clean_age_or_birth_year(self):
        value = self.cleaned_data.get("age_or_birth_year")
        if value is None:
            return None
        this_year = datetime.date.today().year
        if 13 <= value <= 120:
            return this_year - value
        if this_year - 120 <= value <= this_year - 13:
            return value
        raise forms.ValidationError(f"Enter an age between 13 and 120, or a year between {this_year - 120} and {this_year - 13}.")

    def save(self, commit=True):
        self.instance.birth_year = self.cleaned_data.get("age_or_birth_year")
        return super().save(commit=commit)
