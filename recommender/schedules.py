"""The default Celery beat schedule of the app, for the host to merge into its own.

In the host's settings::

    from recommender.schedules import beat_schedule

    CELERY_BEAT_SCHEDULE = {**beat_schedule(), **your_own_entries}

Override one entry by name (same key), or drop it from the dict. Times are in the Celery
timezone (``CELERY_TIMEZONE``, UTC by default).
"""

from celery.schedules import crontab


def beat_schedule() -> dict:
    """A fresh copy of the default schedule (safe to modify)."""
    return {
        # Retrain every strategy (components in parallel, then the hybrid) at night.
        "recommender-train-all": {
            "task": "recommender.tasks.train_all_task",
            "schedule": crontab(hour=3, minute=0),
        },
        # New or edited products get their text embedding within minutes, not at the next retrain.
        "recommender-embed-products": {
            "task": "recommender.tasks.embed_products_task",
            "schedule": 10 * 60.0,
        },
        # How the active versions do on users who arrived since they were trained.
        "recommender-evaluate-active": {
            "task": "recommender.tasks.evaluate_active_task",
            "schedule": crontab(hour=6, minute=0),
        },
        # Ready-made lists for warm users, once the nightly versions are active.
        "recommender-precompute": {
            "task": "recommender.tasks.precompute_recommendations_task",
            "schedule": crontab(hour=5, minute=0),
        },
    }
