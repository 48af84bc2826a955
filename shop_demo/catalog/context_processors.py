def shop(request):
    """Template context every shop page needs (filled in by the shop views)."""
    return {}
