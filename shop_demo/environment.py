"""Services chosen by environment variables, shared by the demo and the test settings.

- ``DATABASE_URL``: e.g. ``postgres://postgres@127.0.0.1:5432/test``; default SQLite.
- ``CELERY_BROKER_URL``: e.g. ``redis://127.0.0.1:6379/0``; default: tasks run eagerly in-process.
- ``REDIS_URL``: cache backend; default: local memory.
"""

import os

import dj_database_url


def database(default_sqlite_path):
    url = os.environ.get("DATABASE_URL")
    if url:
        # Health checks: a connection broken by a database restart is replaced on the next
        # request instead of failing every request of the process until it is restarted.
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
        if config["ENGINE"].endswith("postgresql"):
            # A database host that does not answer fails the request after 5 s, not the OS's minutes
            # (a connect_timeout in the URL's query string wins).
            config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    else:
        config = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(default_sqlite_path),
            # SQLite serialises writers; wait for the lock instead of failing at once. Write-ahead
            # logging: readers never wait for a writer, and a commit costs one append instead of
            # a journal's several syncs (an event write on a product page: ~11 ms -> ~1 ms on a
            # busy machine). With synchronous=NORMAL a power cut may undo the last commits but
            # never corrupts the file; production runs on PostgreSQL (DATABASE_URL).
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    return {"default": config}


def caches():
    url = os.environ.get("REDIS_URL")
    if url:
        backend = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    else:
        backend = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    return {"default": backend}


def celery():
    """Return the CELERY_* settings as a dict (eager unless a broker is configured)."""
    broker = os.environ.get("CELERY_BROKER_URL")
    return {
        "CELERY_BROKER_URL": broker or "memory://",
        "CELERY_RESULT_BACKEND": os.environ.get("CELERY_RESULT_BACKEND", broker or "cache+memory://"),
        "CELERY_TASK_ALWAYS_EAGER": not broker,
        "CELERY_TASK_EAGER_PROPAGATES": True,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
    }
