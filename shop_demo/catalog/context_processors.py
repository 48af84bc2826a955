from .cart import Cart
from .models import Category


def shop(request):
    """What the header of every shop page needs: categories, cart size and the search text."""
    if request.path.startswith(("/admin/", "/api/")):
        return {}
    return {
        "nav_categories": Category.objects.all(),
        "cart_count": len(Cart(request)) if hasattr(request, "session") else 0,
        "search_query": request.GET.get("q", ""),
    }
