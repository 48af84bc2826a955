"""The demo shop's own catalog; the recommender reads it through its catalog adapter."""

from django.db import models
from django.urls import reverse
from django.utils.text import slugify


class Category(models.Model):
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=140, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)[:140] or "category"
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        return reverse("category", args=[self.slug])

    @property
    def initials(self):
        """Two letters standing in for a product photo: "Running Shoes" → "RS"."""
        words = [word for word in self.name.replace("&", " ").split() if word[:1].isalnum()]
        return "".join(word[0] for word in words[:2]).upper() or "?"

    @property
    def hue(self):
        """A stable colour (HSL hue) per category for the CSS product tiles.

        Steps of the golden angle keep neighbouring categories far apart on the colour wheel.
        """
        return round(((self.pk or 0) * 137.508) % 360)


class Product(models.Model):
    sku = models.CharField("SKU", max_length=64, unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    brand = models.CharField(max_length=120, blank=True, default="")
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    in_stock = models.BooleanField(default=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("product", args=[self.pk])

    @property
    def tile_hue(self):
        """The category's colour, nudged per product so a grid of one category is not uniform."""
        base = self.category.hue if self.category_id else 210
        return (base + (self.pk or 0) * 29 % 41 - 20) % 360

    @property
    def tile_variant(self):
        """Which of the CSS tile patterns (0–3) this product's placeholder picture uses."""
        return (self.pk or 0) % 4
