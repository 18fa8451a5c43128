"""Requests that once ended in a 500: each now gets its API's error envelope with a 400
that names the problem, and nothing is admitted or charged."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import tokens
from generations.models import Generation

pytestmark = pytest.mark.django_db


@pytest.fixture
def bearer(alice, sandbox_model, no_broker):
    return {"HTTP_AUTHORIZATION": f"Bearer {tokens.create(alice, 't').secret}"}


@pytest.fixture
def google(bearer):
    return {"HTTP_X_GOOG_API_KEY": bearer["HTTP_AUTHORIZATION"].removeprefix("Bearer ")}


def nested(depth: int) -> bytes:
    return b'{"contents": ' + b"[" * depth + b"]" * depth + b"}"


def test_a_gemini_body_nested_a_hundred_thousand_deep(client, google):
    r = client.post(
        "/v1beta/models/sandbox:generateContent",
        nested(100_000),
        content_type="application/json",
        **google,
    )
    assert r.status_code == 400, r.content[:300]
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "nested" in r.json()["error"]["message"]
    assert not Generation.objects.exists()


def test_an_openai_body_nested_a_hundred_thousand_deep(client, bearer):
    body = b'{"model": "sandbox", "prompt": "x", "extra": ' + nested(100_000) + b"}"
    r = client.post("/v1/images/generations", body, content_type="application/json", **bearer)
    assert r.status_code == 400, r.content[:300]
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert not Generation.objects.exists()


# A lone surrogate cannot be stored or sent anywhere; a NUL byte breaks PostgreSQL text.
BAD_PROMPTS = [("lone surrogate", "a cat \ud800"), ("NUL byte", "a cat\x00 on a mat")]


@pytest.mark.parametrize(("what", "prompt"), BAD_PROMPTS)
def test_a_prompt_that_cannot_be_text_is_refused_by_the_openai_api(client, bearer, what, prompt):
    body = json.dumps({"model": "sandbox", "prompt": prompt})  # ensure_ascii keeps \ud800
    r = client.post("/v1/images/generations", body, content_type="application/json", **bearer)
    assert r.status_code == 400, r.content[:300]
    error = r.json()["error"]
    assert error["param"] == "prompt"
    assert not Generation.objects.exists()


@pytest.mark.parametrize(("what", "prompt"), BAD_PROMPTS)
def test_a_prompt_that_cannot_be_text_is_refused_by_the_gemini_api(client, google, what, prompt):
    body = json.dumps({"contents": [{"parts": [{"text": prompt}]}]})
    r = client.post(
        "/v1beta/models/sandbox:generateContent", body, content_type="application/json", **google
    )
    assert r.status_code == 400, r.content[:300]
    assert "character" in r.json()["error"]["message"]
    assert not Generation.objects.exists()


@pytest.mark.parametrize(("what", "prompt"), BAD_PROMPTS)
def test_a_prompt_that_cannot_be_text_is_refused_by_the_jobs_api(client, bearer, what, prompt):
    body = json.dumps({"model": "sandbox", "prompt": prompt})
    r = client.post("/api/v1/generations", body, content_type="application/json", **bearer)
    assert r.status_code == 400, r.content[:300]
    assert not Generation.objects.exists()


def test_a_nul_in_a_studio_prompt_is_a_form_error(client, alice, sandbox_model, no_broker):
    prompt = "a cat\x00 on a mat"  # (a browser cannot send a lone surrogate in a form)
    client.force_login(alice)
    r = client.post(
        "/generate",
        {
            "prompt": prompt,
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code in (200, 400, 422)
    assert "Null characters are not allowed" in r.content.decode()
    assert not Generation.objects.exists()


def test_edits_with_five_thousand_form_fields(client, bearer):
    fields = {f"f{i}": "x" for i in range(5000)}
    r = client.post("/v1/images/edits", {"model": "sandbox", "prompt": "x", **fields}, **bearer)
    assert r.status_code == 400, r.content[:300]
    assert "fields" in r.json()["error"]["message"]


def test_multipart_without_a_boundary(client, bearer):
    r = client.post(
        "/v1/images/edits", b"--x\r\n\r\n", content_type="multipart/form-data", **bearer
    )
    assert r.status_code == 400, r.content[:300]
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_a_batch_csv_cell_over_the_csv_limit_is_a_form_error(
    client, alice, sandbox_model, no_broker
):
    client.force_login(alice)
    csv_file = SimpleUploadedFile(
        "prompts.csv", ("prompt\n" + "a" * 140_000 + "\n").encode(), content_type="text/csv"
    )
    r = client.post(
        "/batches/check",
        {"model": "sandbox", "aspect_ratio": "1:1", "count": "1", "csv_file": csv_file},
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code in (200, 400, 422), r.status_code
    assert "longer than 131,072 characters" in r.content.decode()
    assert not Generation.objects.exists()
