"""Schemathesis against the served OpenAPI document, on a live ASGI nanoweb with a worker:
no input makes a 5xx, and every documented answer matches its schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_no_input_breaks_the_api(api_server, alice, alice_token):
    schema = schemathesis.openapi.from_url(api_server + "/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7  # models, generations, edits, and the four jobs endpoints
    headers = {"Authorization": f"Bearer {alice_token}"}
    calls = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            response = case.call_and_validate(headers=headers, timeout=90, checks=CHECKS)
            calls.append(response.status_code)

        fuzz()
    assert len(calls) >= len(operations) * 5
    assert not [code for code in calls if code >= 500]
