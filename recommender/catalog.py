"""Adapter between the app and the host's product model.

Everything the app knows about products it reads here, through the field paths in
``RECOMMENDER["PRODUCT_FIELDS"]``. A host with an unusual catalog subclasses
``CatalogAdapter`` and names it in ``RECOMMENDER["CATALOG_ADAPTER"]``.
"""

import functools
from decimal import Decimal, InvalidOperation

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured

from .conf import settings

# Fields a product row has in the app's own terms (and in a bundle's items.csv).
PRODUCT_ATTRIBUTES = ("external_id", "title", "description", "category", "brand", "price", "in_stock")


def get_product_model():
    """Return the host's product model class named by ``RECOMMENDER_PRODUCT_MODEL``."""
    label = settings.PRODUCT_MODEL
    try:
        return apps.get_model(label, require_ready=False)
    except (ValueError, LookupError) as exc:
        raise ImproperlyConfigured(
            f"RECOMMENDER_PRODUCT_MODEL refers to {label!r}, which is not an installed model "
            "('app_label.ModelName')."
        ) from exc


@functools.lru_cache(maxsize=None)
def get_adapter():
    """Return the configured catalog adapter instance (cached; cleared on setting changes)."""
    return settings.CATALOG_ADAPTER(get_product_model(), settings.PRODUCT_FIELDS)


class CatalogAdapter:
    """Reads products as plain rows and writes imported products into the host catalog.

    ``field_paths`` maps the app's attribute names (``PRODUCT_ATTRIBUTES``) to ORM paths
    on the product model; ``"category__name"`` follows a foreign key.
    """

    def __init__(self, model, field_paths):
        self.model = model
        self.field_paths = {name: field_paths.get(name) for name in PRODUCT_ATTRIBUTES}

    # --- validation (used by system checks) -------------------------------------------------
    def configuration_errors(self):
        """Return a list of (attribute, message) for field paths the model does not have."""
        errors = []
        for name, path in self.field_paths.items():
            if path is None:
                continue
            try:
                self._resolve(path)
            except FieldDoesNotExist as exc:
                errors.append((name, str(exc)))
        return errors

    def _resolve(self, path):
        """Return (field on the product model, field on the related model or None)."""
        head, _, tail = path.partition("__")
        field = self.model._meta.get_field(head)
        if not tail:
            return field, None
        if not field.is_relation:
            raise FieldDoesNotExist(f"{self.model.__name__}.{head} is not a relation (path {path!r})")
        return field, field.related_model._meta.get_field(tail)

    # --- reading ------------------------------------------------------------------------------
    def queryset(self):
        """Return the products the recommender may know about (all of them by default)."""
        return self.model._default_manager.all()

    def iter_rows(self, queryset=None, chunk_size=2000):
        """Yield dicts with ``pk`` and every configured attribute, streaming in chunks."""
        queryset = self.queryset() if queryset is None else queryset
        names = [name for name, path in self.field_paths.items() if path]
        paths = [self.field_paths[name] for name in names]
        for values in queryset.order_by("pk").values_list("pk", *paths).iterator(chunk_size=chunk_size):
            row = dict.fromkeys(PRODUCT_ATTRIBUTES)
            row["pk"] = values[0]
            row.update(zip(names, values[1:]))
            yield self._clean_row(row)

    def _clean_row(self, row):
        if row["price"] is not None:
            row["price"] = float(row["price"])
        row["in_stock"] = True if row["in_stock"] is None else bool(row["in_stock"])
        for name in ("title", "description", "category", "brand"):
            row[name] = "" if row[name] is None else str(row[name])
        return row

    def in_stock_pks(self, pks):
        """Return the subset of ``pks`` that can be sold now."""
        return set(self.available(self.model._default_manager.filter(pk__in=list(pks))).values_list("pk", flat=True))

    def in_stock_products(self, pks):
        """``{pk: product}`` of those ``pks`` that ``queryset()`` offers and can be sold now: one query."""
        return self.sellable(pks).in_bulk(list(pks))

    def sellable(self, pks):
        """Products of ``pks`` that ``queryset()`` offers and can be sold now, with the related rows
        their attributes follow (a category's name) joined in: what a shelf shows, in one query."""
        # No ORDER BY: the caller keeps its own (ranked) order, the database need not sort.
        queryset = self.available(self.queryset().filter(pk__in=list(pks))).order_by()
        related = self.related_paths()
        return queryset.select_related(*related) if related else queryset

    def available(self, queryset):
        """``queryset`` narrowed to products that can be sold now (live stock)."""
        path = self.field_paths["in_stock"]
        return queryset.filter(**{path: True}) if path else queryset

    def related_paths(self):
        """Foreign keys the attribute paths follow (``category`` for ``category__name``)."""
        paths = []
        for path in self.field_paths.values():
            if not path or "__" not in path:
                continue
            field, _ = self._resolve(path)
            if (field.many_to_one or field.one_to_one) and field.name not in paths:
                paths.append(field.name)
        return paths

    def value_of(self, product, name):
        """A product's value of one of the attributes (``category__name`` is followed), or None."""
        path = self.field_paths.get(name)
        if not path:
            return None
        value = product
        for part in path.split("__"):
            value = getattr(value, part, None)
            if value is None:
                return None
        return value

    def category_of(self, product):
        """The product's top-level category ("" without one): what the category cap counts."""
        value = self.value_of(product, "category")
        return "" if value is None else str(value).split("|")[0].strip()

    def pk_from_string(self, value):
        """Convert an id from the outside world (API, beacon, bundle) to a primary key value."""
        return self.model._meta.pk.to_python(value)

    def title_of(self, product):
        path = self.field_paths["title"]
        return str(getattr(product, path)) if path and "__" not in path else str(product)

    # --- writing (bulk import) ----------------------------------------------------------------
    def existing_pks_by_external_id(self, external_ids):
        """Return {external_id: pk} for the products that already exist."""
        path = self._require("external_id")
        found = {}
        ids = list(external_ids)
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            found.update(
                (str(ext), pk)
                for pk, ext in self.model._default_manager.filter(**{f"{path}__in": chunk}).values_list("pk", path)
            )
        return found

    def build_product(self, row):
        """Return an unsaved product instance from a bundle row (keys of PRODUCT_ATTRIBUTES)."""
        kwargs = {}
        for name, path in self.field_paths.items():
            if not path or row.get(name) in (None, ""):
                continue
            field, related_field = self._resolve(path)
            value = row[name]
            if related_field is not None:
                kwargs[field.name] = self._related_instance(field, related_field, value)
            else:
                kwargs[field.name] = self._coerce(field, value)
        for field in self.model._meta.concrete_fields:
            # Required related objects (e.g. a category FK) with no value get a placeholder.
            if field.is_relation and not field.null and field.name not in kwargs and not field.primary_key:
                raise ImproperlyConfigured(
                    f"{self.model.__name__}.{field.name} is required but no RECOMMENDER "
                    "PRODUCT_FIELDS entry fills it; subclass CatalogAdapter.build_product."
                )
        return self.model(**kwargs)

    def _coerce(self, field, value):
        internal = field.get_internal_type()
        if internal == "DecimalField":
            try:
                return Decimal(str(value)).quantize(Decimal(1).scaleb(-field.decimal_places))
            except InvalidOperation:
                raise ValueError(f"{value!r} is not a price")
        if internal == "BooleanField":
            return str(value).strip().lower() in ("1", "true", "yes", "y", "t")
        if internal in ("CharField", "SlugField") and field.max_length:
            return str(value)[: field.max_length]
        return value

    def _related_instance(self, field, related_field, value):
        cache = self.__dict__.setdefault("_related_cache", {})
        key = (field.name, value)
        if key not in cache:
            related_model = field.related_model
            lookup = {related_field.name: self._coerce(related_field, value)}
            instance = related_model._default_manager.filter(**lookup).first()
            if instance is None:
                instance = self.create_related(related_model, lookup)
            cache[key] = instance
        return cache[key]

    def create_related(self, related_model, lookup):
        """Create a missing related object (a category) for an imported product."""
        return related_model._default_manager.create(**lookup)

    def forget_related_cache(self):
        self.__dict__.pop("_related_cache", None)

    def _require(self, name):
        path = self.field_paths.get(name)
        if not path:
            raise ImproperlyConfigured(
                f"RECOMMENDER['PRODUCT_FIELDS'][{name!r}] is not set; importing products needs it."
            )
        return path
