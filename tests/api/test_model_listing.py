"""Models as each SDK lists and fetches them: Google's shape under /v1beta (and /v1 for a
Google key), OpenAI's for a Bearer token; only the models this token's user may use."""

import datetime as dt

import pytest

from accounts import tokens
from generations.models import ModelSpec
from tests.factories import make_route

pytestmark = pytest.mark.django_db


@pytest.fixture
def lineup(sandbox_model):
    """Three available models: Nano Banana Pro, Nano Banana and the sandbox."""
    make_route("nano-banana-pro")
    make_route("nano-banana")
    return ["nano-banana-pro", "nano-banana", "sandbox"]


@pytest.fixture
def key(alice):
    return tokens.create(alice, "models").secret


def google(client, path, key, **params):
    return client.get(path, params, HTTP_X_GOOG_API_KEY=key)


def test_gemini_lists_the_models_in_googles_shape(client, lineup, key):
    r = google(client, "/v1beta/models", key)
    assert r.status_code == 200, r.content
    body = r.json()
    assert [m["name"] for m in body["models"]] == [f"models/{s}" for s in lineup]
    assert "nextPageToken" not in body
    pro = body["models"][0]
    assert pro["displayName"] == "Nano Banana Pro"
    assert pro["description"] == ModelSpec.objects.get(slug="nano-banana-pro").description
    assert pro["version"] == "gemini-3-pro-image"  # the upstream id that runs it
    assert pro["inputTokenLimit"] > 0 and pro["outputTokenLimit"] > 0
    assert pro["supportedGenerationMethods"] == ["generateContent"]
    assert body["models"][2]["displayName"] == "Sandbox (offline)"


def test_gemini_pages_with_page_size_and_page_token(client, lineup, key):
    first = google(client, "/v1beta/models", key, pageSize=2).json()
    assert [m["name"] for m in first["models"]] == ["models/nano-banana-pro", "models/nano-banana"]
    second = google(
        client, "/v1beta/models", key, pageSize=2, pageToken=first["nextPageToken"]
    ).json()
    assert [m["name"] for m in second["models"]] == ["models/sandbox"]
    assert "nextPageToken" not in second


@pytest.mark.parametrize(
    "params, field",
    [
        ({"pageSize": "many"}, "pageSize"),
        ({"pageSize": -1}, "pageSize"),
        ({"pageToken": "x"}, "pageToken"),
    ],
)
def test_gemini_refuses_a_page_it_cannot_read(client, lineup, key, params, field):
    r = google(client, "/v1beta/models", key, **params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["fieldViolations"][0]["field"] == field


def test_only_the_models_this_user_may_use_are_listed_and_fetched(client, lineup, alice, key):
    alice.allowed_models.set([ModelSpec.objects.get(slug="sandbox")])
    names = [m["name"] for m in google(client, "/v1beta/models", key).json()["models"]]
    assert names == ["models/sandbox"]
    r = google(client, "/v1beta/models/nano-banana-pro", key)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    assert "nano-banana-pro" in r.json()["error"]["message"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    assert [m["id"] for m in client.get("/v1/models", **bearer).json()["data"]] == ["sandbox"]
    r = client.get("/v1/models/nano-banana-pro", **bearer)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("version", ["v1beta", "v1", "v1alpha"])
def test_gemini_gets_a_model_by_slug_upstream_id_or_alias(client, lineup, key, version):
    for name in ["nano-banana-pro", "gemini-3-pro-image", "gemini-3-pro-image-preview"]:
        r = google(client, f"/{version}/models/{name}", key)
        assert r.status_code == 200, (name, r.content)
        assert r.json()["name"] == "models/nano-banana-pro"
        assert r.json()["supportedGenerationMethods"] == ["generateContent"]


def test_gemini_get_of_an_unknown_model_is_a_404_in_googles_envelope(client, lineup, key):
    r = google(client, "/v1beta/models/imagen-4", key)
    assert r.status_code == 404
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND") and "imagen-4" in error["message"]


def test_v1_models_takes_the_shape_of_the_callers_sdk(client, lineup, key):
    by_header = google(client, "/v1/models", key).json()
    by_query = client.get(f"/v1/models?key={key}").json()
    bearer = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert [m["name"] for m in by_header["models"]] == [f"models/{s}" for s in lineup]
    assert by_query == by_header
    assert bearer["object"] == "list" and [m["id"] for m in bearer["data"]] == lineup
    # a Bearer token wins when both are sent: the OpenAI SDK's shape
    both = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_GOOG_API_KEY=key)
    assert "data" in both.json()


def test_a_refused_google_key_gets_googles_401(client, lineup):
    for path in ["/v1beta/models", "/v1/models", "/v1/models/sandbox", "/v1beta/models/sandbox"]:
        r = google(client, path, "nw_nope")
        assert r.status_code == 401, path
        assert r.json()["error"]["status"] == "UNAUTHENTICATED", path
    r = client.get("/v1/models", HTTP_AUTHORIZATION="Bearer nw_nope")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_openai_retrieves_one_model(client, lineup, key):
    spec = ModelSpec.objects.get(slug="nano-banana-pro")
    spec.shutdown_date = dt.date(2027, 3, 1)
    spec.save()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    r = client.get("/v1/models/nano-banana-pro", **bearer)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["id"] == "nano-banana-pro" and body["object"] == "model"
    assert isinstance(body["created"], int) and body["owned_by"] == "nanoweb"
    assert body["shutdown_date"] == "2027-03-01"
    listed = client.get("/v1/models", **bearer).json()["data"]
    assert body == next(m for m in listed if m["id"] == "nano-banana-pro")
    assert client.get("/v1/models/gemini-3-pro-image-preview", **bearer).json()["id"] == (
        "nano-banana-pro"
    )
    r = client.get("/v1/models/dall-e-3", **bearer)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "dall-e-3" in error["message"]


def test_a_shut_down_model_is_neither_listed_nor_fetched(client, lineup, key):
    ModelSpec.objects.filter(slug="nano-banana").update(status=ModelSpec.SHUT_DOWN)
    names = [m["name"] for m in google(client, "/v1beta/models", key).json()["models"]]
    assert "models/nano-banana" not in names
    assert google(client, "/v1beta/models/nano-banana", key).status_code == 404
