"""Signals a host shop sends so the recommender learns about orders and carts."""
