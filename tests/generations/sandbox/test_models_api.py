"""models.list and models.get, per-key visibility, and the 404 for ids Google does not serve."""

from __future__ import annotations

import pytest

from generations.sandbox.server import MODELS_PAGE_SIZE, SandboxConfig, running_sandbox
from tests.generations.sandbox.client import (
    FLASH,
    FLASH_31,
    KEY,
    LITE,
    NB21,
    PRO,
    SHUT_DOWN,
    TEXT_MODEL,
    generate,
    get_model,
    list_models,
)

IMAGE_MODELS = {FLASH, NB21, PRO, FLASH_31, LITE}
NOT_FOUND = (
    "models/{} is not found for API version v1beta, or is not supported for {}. "
    "Call ListModels to see the list of available models and their supported methods."
)


def every_model(url: str, key: str = KEY) -> list[dict]:
    """Every page of models.list, followed the way a client does."""
    models, token = [], None
    while True:
        body = list_models(url, key, **({"pageToken": token} if token else {})).json()
        models += body["models"]
        token = body.get("nextPageToken")
        if not token:
            return models


def names(models: list[dict]) -> list[str]:
    return [m["name"].removeprefix("models/") for m in models]


def test_it_lists_the_lineup_a_page_at_a_time(sandbox_url):
    first = list_models(sandbox_url).json()
    assert len(first["models"]) == MODELS_PAGE_SIZE
    second = list_models(sandbox_url, pageToken=first["nextPageToken"]).json()
    assert "nextPageToken" not in second  # the last page says so by leaving it out
    listed = names(first["models"] + second["models"])
    assert len(listed) == len(set(listed))
    assert set(listed) >= IMAGE_MODELS
    assert TEXT_MODEL in listed and "gemini-embedding-001" in listed  # a client must filter
    assert not set(SHUT_DOWN) & set(listed)


def test_it_honours_the_page_size(sandbox_url):
    everything = names(list_models(sandbox_url, pageSize=1000).json()["models"])
    pages, token = [], None
    while True:
        body = list_models(sandbox_url, pageSize=3, **({"pageToken": token} if token else {}))
        pages.append(names(body.json()["models"]))
        token = body.json().get("nextPageToken")
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, len(everything) - 6]
    assert sum(pages, []) == everything


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pageSize": "many"}, "Invalid value at 'page_size' (TYPE_INT32), \"many\""),
        ({"pageSize": "-1"}, "page_size must not be negative."),
        ({"pageToken": "not-a-token"}, "Invalid page token."),
    ],
)
def test_it_refuses_a_bad_page_request(sandbox_url, params, message):
    response = list_models(sandbox_url, **params)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": 400,
        "message": message,
        "status": "INVALID_ARGUMENT",
    }


def test_each_entry_has_googles_shape(sandbox_url):
    models = {m["name"]: m for m in list_models(sandbox_url, pageSize=100).json()["models"]}
    assert models[f"models/{NB21}"] == {
        "name": f"models/{NB21}",
        "version": "2.1",
        "displayName": "Nano Banana 2.1",
        "description": "Gemini Nano Banana 2.1: image generation and conversational editing",
        "inputTokenLimit": 131072,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }
    assert models[f"models/{LITE}"]["outputTokenLimit"] == 4096
    assert "thinking" not in models[f"models/{FLASH}"]
    embedding = models["models/gemini-embedding-001"]
    assert "generateContent" not in embedding["supportedGenerationMethods"]
    assert "temperature" not in embedding


def test_it_gets_one_model(sandbox_url):
    response = get_model(sandbox_url, PRO)
    assert response.status_code == 200
    assert response.json()["displayName"] == "Nano Banana Pro"
    assert response.json() == next(
        m
        for m in list_models(sandbox_url, pageSize=100).json()["models"]
        if m["name"].endswith(PRO)
    )


@pytest.mark.parametrize("model", [*SHUT_DOWN, "gemini-2.0-unknown", "nano-banana-9"])
def test_it_answers_ids_it_does_not_serve_with_googles_404(sandbox_url, model):
    made = generate(sandbox_url, model)
    assert made.status_code == 404
    assert made.json() == {
        "error": {
            "code": 404,
            "message": NOT_FOUND.format(model, "generateContent"),
            "status": "NOT_FOUND",
        }
    }
    got = get_model(sandbox_url, model)
    assert got.status_code == 404
    assert got.json()["error"]["message"] == NOT_FOUND.format(model, "get")


def test_a_model_without_generate_content_is_not_found_for_it(sandbox_url):
    response = generate(sandbox_url, "gemini-embedding-001")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == NOT_FOUND.format(
        "gemini-embedding-001", "generateContent"
    )
    assert get_model(sandbox_url, "gemini-embedding-001").status_code == 200


def test_a_404_does_not_count_against_the_quota():
    with running_sandbox(SandboxConfig(rpm=1)) as url:
        for _ in range(3):
            assert generate(url, SHUT_DOWN[0], modalities=["TEXT"]).status_code == 404
        assert generate(url, FLASH, modalities=["TEXT"]).status_code == 200


def test_it_checks_the_key_first():
    with running_sandbox(SandboxConfig(invalid_keys={"revoked"})) as url:
        assert list_models(url, key=None).status_code == 403
        assert get_model(url, PRO, key=None).json()["error"]["status"] == "PERMISSION_DENIED"
        refused = list_models(url, key="revoked")
        assert refused.status_code == 400
        assert refused.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        assert generate(url, SHUT_DOWN[0], key="revoked").status_code == 400


def test_it_takes_the_key_from_the_query_string(sandbox_url):
    from tests.generations.sandbox.client import http

    response = http.get(f"{sandbox_url}/v1beta/models/{NB21}?key={KEY}")
    assert response.status_code == 200


def test_a_key_cannot_see_a_model_hidden_from_it():
    config = SandboxConfig(hidden_models={"limited-key": {PRO, NB21}})
    with running_sandbox(config) as url:
        limited = names(list_models(url, "limited-key", pageSize=100).json()["models"])
        everyone = names(list_models(url, "other-key", pageSize=100).json()["models"])
        assert set(everyone) - set(limited) == {PRO, NB21}
        for model in (PRO, NB21):
            made = generate(url, model, key="limited-key", modalities=["TEXT"])
            assert made.status_code == 404
            assert made.json()["error"]["message"] == NOT_FOUND.format(model, "generateContent")
            assert get_model(url, model, key="limited-key").status_code == 404
            assert generate(url, model, key="other-key", modalities=["TEXT"]).status_code == 200
            assert get_model(url, model, key="other-key").status_code == 200
        assert generate(url, FLASH_31, key="limited-key", modalities=["TEXT"]).status_code == 200


def test_hidden_models_are_left_out_of_every_page():
    with running_sandbox(SandboxConfig(hidden_models={"k": [FLASH]})) as url:
        listed = names(every_model(url, "k"))
    assert FLASH not in listed
    assert IMAGE_MODELS - {FLASH} <= set(listed)


class TestTheGoogleGenaiSdk:
    """The official SDK parses the answers (it defaults to API version v1: ask for v1beta)."""

    @staticmethod
    def client(url: str, key: str = KEY):
        from google import genai
        from google.genai import types

        options = types.HttpOptions(base_url=url, api_version="v1beta")
        return genai.Client(api_key=key, http_options=options)

    def test_it_lists_every_page(self, sandbox_url):
        client = self.client(sandbox_url)  # kept: the pager needs it for the next page
        pager = client.models.list()
        assert len(pager.page) == MODELS_PAGE_SIZE
        models = list(pager)
        assert len(models) > MODELS_PAGE_SIZE  # the pager followed nextPageToken
        image = [m for m in models if m.name.removeprefix("models/") in IMAGE_MODELS]
        assert len(image) == len(IMAGE_MODELS)
        lite = next(m for m in image if m.name == f"models/{LITE}")
        assert (lite.display_name, lite.input_token_limit, lite.output_token_limit) == (
            "Nano Banana 2 Lite",
            65536,
            4096,
        )
        assert "generateContent" in lite.supported_actions
        assert lite.thinking is True

    def test_it_gets_a_model_and_reads_the_404(self, sandbox_url):
        from google.genai import errors

        client = self.client(sandbox_url)
        model = client.models.get(model=NB21)
        assert (model.name, model.version, model.top_k) == (f"models/{NB21}", "2.1", 64)
        with pytest.raises(errors.ClientError) as missing:
            client.models.get(model=SHUT_DOWN[0])
        assert (missing.value.code, missing.value.status) == (404, "NOT_FOUND")

    def test_a_hidden_model_is_gone_for_that_key_only(self):
        from google.genai import errors

        with running_sandbox(SandboxConfig(hidden_models={"k": [LITE]})) as url:
            client = self.client(url, "k")
            assert LITE not in names([{"name": m.name} for m in client.models.list()])
            with pytest.raises(errors.ClientError) as missing:
                client.models.generate_content(model=LITE, contents="a kite")
            assert missing.value.code == 404
            assert self.client(url).models.get(model=LITE).display_name == "Nano Banana 2 Lite"
