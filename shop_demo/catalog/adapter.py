"""The demo shop's catalog adapter: categories are a foreign key, created on import."""

from recommender.catalog import CatalogAdapter


class ShopCatalogAdapter(CatalogAdapter):
    """Takes the top level of a bundle's ``a|b|c`` category path as the shop category."""

    def build_product(self, row):
        if row.get("category"):
            row = {**row, "category": str(row["category"]).split("|")[0].strip()[:120]}
        return super().build_product(row)
