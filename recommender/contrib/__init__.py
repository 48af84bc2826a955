"""Integrations of the app with particular shop frameworks (``recommender.contrib.oscar``)."""
