"""Settings of the server process that tests/test_faults.py restarts PostgreSQL under.

The test settings (DATABASE_URL names the test's own throwaway cluster), without rate limits:
every client of that test is 127.0.0.1.
"""

from .settings import *  # noqa: F401,F403
from .settings import RECOMMENDER

RECOMMENDER = {**RECOMMENDER, "EVENTS_THROTTLE_RATE": None, "RECOMMENDATIONS_THROTTLE_RATE": None}
# The test counts the middleware's lines in the server's output.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"recommender": {"handlers": ["console"], "level": "WARNING"}},
}
