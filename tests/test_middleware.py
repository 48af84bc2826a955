"""DatabaseUnavailableMiddleware: a clean 503 with Retry-After while the database cannot be reached.

The outage is simulated in-process (every new cursor fails as a refused connection does), so
this runs on SQLite too; tests/test_faults.py restarts a real PostgreSQL under a real server.
"""

import logging
import sqlite3
from contextlib import contextmanager
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from recommender.middleware import DatabaseUnavailableMiddleware, database_unavailable
from recommender.models import Interaction
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
REFUSED = "connection to server at 127.0.0.1, port 5432 failed: Connection refused"


@contextmanager
def database_down():
    """Every query fails as it does while the database server is stopped."""
    def refuse(self):
        raise OperationalError(REFUSED) from ConnectionRefusedError(111, "Connection refused")

    with mock.patch.object(BaseDatabaseWrapper, "ensure_connection", refuse):
        yield


def test_an_event_batch_posted_while_the_database_is_down_gets_a_json_503_and_its_retry_is_stored():
    """POST /api/events/ during the outage: 503, JSON, Retry-After; the same batch after it: stored once."""
    product = make_product()
    client = APIClient()
    body = {"batch_id": "outage-1", "events": [{"product": str(product.pk), "event": "view"}]}
    with database_down():
        refused = client.post("/api/events/", body, format="json")
    assert refused.status_code == 503
    assert refused["Content-Type"] == "application/json"
    assert refused.json() == {"detail": "The database is temporarily unavailable; try again shortly.",
                              "code": "database_unavailable"}
    assert refused["Retry-After"] == "5"
    assert Interaction.objects.count() == 0
    assert client.post("/api/events/", body, format="json").status_code == 201
    assert client.post("/api/events/", body, format="json").status_code == 201
    assert Interaction.objects.count() == 1


def test_recommendations_asked_while_the_database_is_down_get_a_503():
    """GET /api/recommendations/ during the outage is a 503 too, not a 500."""
    make_product()
    with database_down():
        response = APIClient().get("/api/recommendations/", {"k": 4})
    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"


def test_a_browser_gets_a_plain_unavailable_page(client):
    """An HTML page during the outage: 503 with the app's page, rendered without touching the database."""
    with database_down():
        response = client.get("/recommendations/onboarding/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "5"
    assert b"Temporarily unavailable" in response.content


def test_retry_after_follows_the_setting():
    """RECOMMENDER["DATABASE_UNAVAILABLE_RETRY_AFTER"] is the header's value."""
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "DATABASE_UNAVAILABLE_RETRY_AFTER": 30}):
        with database_down():
            response = APIClient().get("/api/recommendations/")
    assert response["Retry-After"] == "30"


def test_each_refused_request_is_logged_once_as_an_error_with_the_reason(caplog):
    """One error record per refused request, naming the request and the database's message;
    Django's own "Service Unavailable" line is not added."""
    caplog.set_level(logging.INFO)
    with database_down():
        assert APIClient().post("/api/events/", {"events": []}, format="json").status_code == 503
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert errors[0].name == "recommender.middleware"
    assert errors[0].getMessage() == f"Database unavailable, answered 503: POST /api/events/: {REFUSED}"


def test_a_wrong_query_is_not_mistaken_for_an_outage():
    """A query on a missing table (sqlite3 calls it an OperationalError too) stays a server error."""
    with pytest.raises(DatabaseError) as raised, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
    assert not database_unavailable(raised.value)


@pytest.mark.parametrize("exception, unavailable", [
    (OperationalError(REFUSED), True),
    (ValueError("a bug"), False),
    (DatabaseError("a constraint"), False),
])
def test_only_database_outages_are_answered(exception, unavailable):
    """The middleware answers outages and leaves every other exception to Django (a 500)."""
    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    response = middleware.process_exception(RequestFactory().get("/"), exception)
    assert (response is not None and response.status_code == 503) is unavailable


def test_a_locked_sqlite_database_counts_as_unavailable():
    """sqlite3's busy and locked errors are an outage (retry later), unlike its generic SQLITE_ERROR."""
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorname = "SQLITE_BUSY"
    wrapped = OperationalError("database is locked")
    wrapped.__cause__ = busy
    assert database_unavailable(wrapped)
