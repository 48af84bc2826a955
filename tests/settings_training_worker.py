"""Test settings of the Celery worker that tests/test_training_worker.py starts.

The test suite's settings plus the test strategies, so the worker can train them.
"""

from .settings import *  # noqa: F401,F403
from .settings import RECOMMENDER

RECOMMENDER = {
    **RECOMMENDER,
    "STRATEGIES": {
        "toy": "tests.training_support.ToyStrategy",
        "toy2": "tests.training_support.ToyStrategy",
        "blocking": "tests.training_support.BlockingStrategy",
    },
}
