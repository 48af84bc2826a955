"""A clean 503 while the database cannot be reached.

Add ``"recommender.middleware.DatabaseUnavailableMiddleware"`` to ``MIDDLEWARE`` (last is
fine). When a view, a template or anything they call (the session, ``request.user``) raises an
error saying the database cannot serve now (see ``database_unavailable``), the visitor gets a
503 with ``Retry-After`` instead of Django's 500: a JSON body for API clients, a plain
"temporarily unavailable" page for browsers (template ``recommender/unavailable.html``,
rendered without the request so no context processor touches the database). One error is logged per refused request, without a
traceback. The next request reconnects by itself when the host's database settings enable
``CONN_HEALTH_CHECKS`` (or use ``CONN_MAX_AGE = 0``).

Errors raised by other middleware after the view (a session save racing the outage) are
outside a middleware's reach and stay Django's 500.
"""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.log import log_response

from .conf import settings

logger = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "The database is temporarily unavailable; try again shortly."


def database_unavailable(exception) -> bool:
    """Whether ``exception`` says the database cannot be reached or used now, not that a query is wrong.

    PEP 249 reserves ``OperationalError`` for failures of the database's operation (a lost or
    refused connection, a shutdown, a lock timeout) and ``InterfaceError`` for the connection
    itself (psycopg2's "connection already closed"); sqlite3 alone also reports schema mistakes
    ("no such table") as ``OperationalError``, with its generic ``SQLITE_ERROR`` code.
    """
    if not isinstance(exception, (OperationalError, InterfaceError)):
        return False
    return getattr(exception.__cause__, "sqlite_errorname", None) != "SQLITE_ERROR"


def unavailable_response(request) -> HttpResponse:
    """The 503 for ``request``: JSON unless the client prefers HTML."""
    if request.get_preferred_type(["application/json", "text/html"]) == "text/html":
        response = HttpResponse(render_to_string("recommender/unavailable.html"), status=503)
    else:
        response = JsonResponse({"detail": UNAVAILABLE_MESSAGE, "code": "database_unavailable"}, status=503)
    response["Retry-After"] = str(settings.DATABASE_UNAVAILABLE_RETRY_AFTER)
    return response


class DatabaseUnavailableMiddleware:
    """Answer 503 with ``Retry-After`` when the database is down; see the module docstring."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        """A 503 for a database outage; None (Django's usual handling) for anything else."""
        if not database_unavailable(exception):
            return None
        response = unavailable_response(request)
        # Logged here, once, with the reason; Django's own "Service Unavailable" line is skipped.
        log_response("Database unavailable, answered 503: %s %s: %s", request.method, request.path,
                     str(exception).strip()[:300], response=response, request=request, logger=logger)
        return response
