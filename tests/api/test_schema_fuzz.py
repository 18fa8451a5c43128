"""Schemathesis on a live ASGI nanoweb with a worker: no input makes a 5xx. The OpenAI
and jobs routes are fuzzed from the served OpenAPI document (and their documented
answers must match it); the Gemini-compatible routes, plain views outside that
document, from the subset of Google's API they serve, written down below."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

_TEXT = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 200}}}
_INLINE = {
    "type": "object",
    "properties": {
        "inlineData": {
            "type": "object",
            "properties": {
                "mimeType": {"type": "string", "enum": ["image/png", "image/jpeg", "text/plain"]},
                "data": {"type": "string", "maxLength": 400},
            },
        }
    },
}
_GENERATE_BODY = {
    "type": "object",
    "properties": {
        "contents": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "role": {"type": "string", "enum": ["user", "model", "system"]},
                    "parts": {"type": "array", "maxItems": 3, "items": {"anyOf": [_TEXT, _INLINE]}},
                },
            },
        },
        "generationConfig": {
            "type": "object",
            "properties": {
                "responseModalities": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["IMAGE", "TEXT", "AUDIO"]},
                },
                "candidateCount": {"type": "integer", "minimum": -1, "maximum": 3},
                "imageConfig": {
                    "type": "object",
                    "properties": {
                        "aspectRatio": {"type": "string", "enum": ["1:1", "16:9", "5:1", ""]},
                        "imageSize": {"type": "string", "enum": ["1K", "2K", "4K", "8K"]},
                    },
                },
                "thinkingConfig": {
                    "type": "object",
                    "properties": {"thinkingLevel": {"type": "string", "maxLength": 10}},
                },
            },
        },
        "tools": {"type": "array", "maxItems": 2, "items": {"type": "object"}},
    },
}
_MODEL = {
    "name": "model",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 40},
    "examples": {"sandbox": {"value": "sandbox"}},
}
_ANSWERS = {
    "default": {
        "description": "Google's answer, or an error in its envelope",
        "content": {"application/json": {"schema": {}}},
    }
}
_GENERATE = {
    "parameters": [_MODEL],
    "requestBody": {"required": True, "content": {"application/json": {"schema": _GENERATE_BODY}}},
    "responses": _ANSWERS,
}
_PAGE = [
    {"name": "pageSize", "in": "query", "schema": {"type": "integer"}},
    {"name": "pageToken", "in": "query", "schema": {"type": "string", "maxLength": 40}},
]
GEMINI = {
    "openapi": "3.0.3",
    "info": {"title": "The Gemini API as nanoweb serves it", "version": "v1beta"},
    "paths": {
        "/v1beta/models/{model}:generateContent": {"post": _GENERATE},
        "/v1beta/models/{model}:streamGenerateContent": {
            "post": {
                **_GENERATE,
                "parameters": [
                    _MODEL,
                    {"name": "alt", "in": "query", "schema": {"type": "string", "enum": ["sse"]}},
                ],
            }
        },
        "/v1beta/models": {"get": {"parameters": _PAGE, "responses": _ANSWERS}},
        "/v1/models": {"get": {"parameters": _PAGE, "responses": _ANSWERS}},
        "/v1beta/models/{model}": {"get": {"parameters": [_MODEL], "responses": _ANSWERS}},
    },
}


def fuzz_every_operation(schema, base: str, headers: dict, checks) -> list[int]:
    """The status of every call made; each operation gets a dozen derandomized cases."""
    operations = [result.ok() for result in schema.get_all_operations()]
    calls: list[int] = []
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
            response = case.call_and_validate(
                base_url=base, headers=headers, timeout=90, checks=checks
            )
            calls.append(response.status_code)

        fuzz()
    assert len(calls) >= len(operations) * 5
    return calls


def test_no_input_breaks_the_openai_and_jobs_apis(api_server, alice, alice_token):
    schema = schemathesis.openapi.from_url(api_server + "/api/v1/openapi.json")
    paths = {op.ok().path for op in schema.get_all_operations()}
    assert {"/v1/images/generations", "/v1/images/edits", "/v1/models"} <= paths
    assert len(paths) >= 6  # and the jobs endpoints
    headers = {"Authorization": f"Bearer {alice_token}"}
    calls = fuzz_every_operation(schema, api_server, headers, CHECKS)
    assert not [code for code in calls if code >= 500]


def test_no_input_breaks_the_gemini_api(api_server, alice, alice_token):
    schema = schemathesis.openapi.from_dict(GEMINI)
    headers = {"x-goog-api-key": alice_token}
    calls = fuzz_every_operation(schema, api_server, headers, [not_a_server_error])
    assert not [code for code in calls if code >= 500]
    assert 200 in calls  # some cases got through to images, not only refusals
