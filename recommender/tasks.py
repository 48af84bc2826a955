"""Celery tasks of the app: thin wrappers that take ids and keys and call the service modules.

Every task is safe to run twice (STYLE rule 7) and retries only transient errors, with backoff.
"""

import logging

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import OperationalError

from . import events

logger = logging.getLogger(__name__)

# Transient failures worth a retry: the database restarting or a connection dropped.
TRANSIENT_ERRORS = (OperationalError,)


@shared_task(
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def record_events_task(events_batch, user_id=None, visitor_key="", batch_key=None):
    """Record a batch of JSON events for a user id or a visitor key; return how many are stored.

    Give a ``batch_key`` so that a redelivered or retried task stores the batch once.
    """
    user = None
    if user_id is not None:
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        if user is None:
            logger.warning("record_events_task: user %s no longer exists; %d events dropped", user_id, len(events_batch))
            return 0
    return len(events.record(events_batch, user=user, visitor_key=visitor_key, batch_key=batch_key))
