"""Test settings of the Celery worker that tests/test_versions_worker.py starts.

The test suite's settings plus the test strategies, so the worker can train them; the tasks the
worker itself queues (a chord's body) go to the test's own queue.
"""

import os

from .settings import *  # noqa: F401,F403
from .settings import RECOMMENDER

if os.environ.get("RECOMMENDER_TEST_QUEUE"):
    CELERY_TASK_ROUTES = {"recommender.tasks.*": {"queue": os.environ["RECOMMENDER_TEST_QUEUE"]}}

RECOMMENDER = {
    **RECOMMENDER,
    "STRATEGIES": {
        "toy": "tests.training_support.ToyStrategy",
        "toy2": "tests.training_support.ToyStrategy",
        "toy_blend": "tests.training_support.ToyBlend",
        "blocking": "tests.training_support.BlockingStrategy",
    },
}
