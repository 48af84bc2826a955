"""Signal receivers the app connects on startup (see apps.py)."""
