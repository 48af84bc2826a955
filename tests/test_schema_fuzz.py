"""Hostile input, generated: schemathesis walks every operation of ``/api/schema/`` with data
drawn from the schema (and data that breaks it) and checks the answers.

No 5xx, and every documented answer matches its schema. Bounded examples per operation, run
through the WSGI app in-process (no server to start).
"""

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from recommender.testing.factories import make_product

MAX_EXAMPLES = 25


@pytest.fixture
def api_schema(db):
    make_product(title="Fuzzed lamp")  # so that some generated ids hit a real product
    # As Django's test client does: the end of a request must not close the test's connection
    # (inside the test transaction PostgreSQL's connection would otherwise be dropped).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "EVENTS_THROTTLE_RATE": None,
                                        "RECOMMENDATIONS_THROTTLE_RATE": None}):
        try:
            yield schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)


@pytest.mark.slow
def test_api_survives_generated_input(api_schema):
    """Generated requests to every operation never get a 5xx; documented answers match their schema."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8, "the schema lists fewer operations than the API has"
    for operation in operations:
        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
        def call(case):
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance,
                                           content_type_conformance])

        call()
