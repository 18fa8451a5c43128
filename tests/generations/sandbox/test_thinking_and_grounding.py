"""generationConfig.thinkingConfig.thinkingLevel and the Google Search tool."""

from __future__ import annotations

import re

import pytest

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.client import (
    FLASH,
    FLASH_31,
    LITE,
    NB21,
    PRO,
    TEXT_MODEL,
    generate,
    image_of,
    parts,
)

SEARCH = [{"googleSearch": {}}]


def thoughts(response) -> int:
    assert response.status_code == 200, response.text
    return response.json()["usageMetadata"]["thoughtsTokenCount"]


def error_message(response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    return error["message"]


@pytest.mark.parametrize(
    ("model", "level", "bounds"),
    [
        (NB21, "minimal", (20, 90)),
        (NB21, "medium", (120, 400)),
        (NB21, "high", (450, 1400)),
        (NB21, "HIGH", (450, 1400)),  # the SDKs send the enum's name
        (FLASH_31, "minimal", (20, 90)),
        (FLASH_31, "high", (450, 1400)),
        (LITE, "minimal", (20, 90)),
        (LITE, "high", (450, 1400)),
        (PRO, "high", (100, 400)),
    ],
)
def test_the_thinking_level_sets_the_thought_tokens(sandbox_url, model, level, bounds):
    response = generate(sandbox_url, model, modalities=["TEXT"], thinking={"thinkingLevel": level})
    assert bounds[0] <= thoughts(response) <= bounds[1]
    usage = response.json()["usageMetadata"]
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )


def test_minimal_thinks_less_than_high_every_time(sandbox_url):
    for _ in range(5):
        low = thoughts(generate(sandbox_url, NB21, thinking={"thinking_level": "minimal"}))
        high = thoughts(generate(sandbox_url, NB21, thinking={"thinking_level": "high"}))
        assert low < high


def test_a_thinking_config_without_a_level_is_the_default(sandbox_url):
    response = generate(sandbox_url, NB21, thinking={"includeThoughts": False})
    assert 120 <= thoughts(response) <= 400  # medium
    assert all("thoughtSignature" in p for p in parts(response))


@pytest.mark.parametrize(
    ("model", "level", "supported"),
    [
        (FLASH_31, "medium", "minimal, high"),
        (LITE, "medium", "minimal, high"),
        (LITE, "low", "minimal, high"),
        (NB21, "low", "minimal, medium, high"),
        (PRO, "minimal", "high"),
    ],
)
def test_it_refuses_a_level_the_model_does_not_take(sandbox_url, model, level, supported):
    response = generate(sandbox_url, model, thinking={"thinkingLevel": level.upper()})
    assert error_message(response) == (
        f"Thinking level '{level}' is not supported for models/{model}. "
        f"Supported levels: {supported}."
    )


def test_it_refuses_a_level_that_does_not_exist(sandbox_url):
    message = error_message(generate(sandbox_url, NB21, thinking={"thinkingLevel": "extreme"}))
    assert message.startswith("Invalid value at 'generation_config.thinking_config.thinking_level'")
    assert message.endswith('"extreme"')


def test_2_5_flash_image_refuses_any_thinking_config(sandbox_url):
    for thinking in ({}, {"thinkingBudget": 0}, {"thinkingLevel": "high"}):
        response = generate(sandbox_url, FLASH, thinking=thinking)
        assert error_message(response) == f"Thinking is not enabled for models/{FLASH}."


@pytest.mark.parametrize("model", [NB21, PRO, FLASH_31])
def test_a_search_tool_brings_grounding_metadata(sandbox_url, model):
    response = generate(sandbox_url, model, prompt="the Eiffel Tower at night", tools=SEARCH)
    assert response.status_code == 200
    candidate = response.json()["candidates"][0]
    metadata = candidate["groundingMetadata"]
    assert list(metadata) == [
        "webSearchQueries",
        "searchEntryPoint",
        "groundingChunks",
        "groundingSupports",
    ]
    assert metadata["webSearchQueries"][0] == "the Eiffel Tower at night"
    assert "<style>" in metadata["searchEntryPoint"]["renderedContent"]
    assert "the Eiffel Tower at night" in metadata["searchEntryPoint"]["renderedContent"]
    assert len(metadata["groundingChunks"]) == 2
    for chunk in metadata["groundingChunks"]:
        assert set(chunk) == {"web"}
        assert chunk["web"]["uri"].startswith(
            "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"
        )
        assert re.fullmatch(r"[a-z0-9.]+\.[a-z]+", chunk["web"]["title"])
    text = parts(response)[0]["text"]
    assert metadata["groundingSupports"] == [
        {
            "segment": {"endIndex": len(text.encode()), "text": text},
            "groundingChunkIndices": [0, 1],
        }
    ]
    assert image_of(response).format == "JPEG"  # still an image


def test_grounding_offsets_count_utf8_bytes(sandbox_url):
    response = generate(sandbox_url, NB21, prompt="a café " + "très " * 30, tools=SEARCH)
    text = parts(response)[0]["text"]
    segment = response.json()["candidates"][0]["groundingMetadata"]["groundingSupports"][0]
    assert segment["segment"]["endIndex"] == len(text.encode()) > len(text)


def test_an_image_only_answer_has_no_supports_to_ground(sandbox_url):
    response = generate(sandbox_url, PRO, modalities=["IMAGE"], tools=[{"google_search": {}}])
    metadata = response.json()["candidates"][0]["groundingMetadata"]
    assert "groundingSupports" not in metadata
    assert metadata["groundingChunks"]


def test_no_tool_no_grounding(sandbox_url):
    assert "groundingMetadata" not in generate(sandbox_url, NB21).json()["candidates"][0]


@pytest.mark.parametrize("model", [LITE, FLASH])
def test_models_without_search_grounding_refuse_the_tool(sandbox_url, model):
    response = generate(sandbox_url, model, tools=SEARCH)
    assert error_message(response) == "Search Grounding is not supported."


def test_the_old_retrieval_tool_is_refused(sandbox_url):
    response = generate(sandbox_url, NB21, tools=[{"googleSearchRetrieval": {}}])
    assert "google_search_retrieval is not supported" in error_message(response)


def test_grounding_is_repeatable_from_a_seed():
    def run():
        with running_sandbox(SandboxConfig(seed=11)) as url:
            return generate(url, NB21, tools=SEARCH).json()["candidates"][0]["groundingMetadata"]

    assert run() == run()


def test_a_text_model_answers_text_and_refuses_images(sandbox_url):
    response = generate(sandbox_url, TEXT_MODEL, prompt="why is the sky blue", tools=SEARCH)
    assert [list(p) for p in parts(response)] == [["text", "thoughtSignature"]]
    assert "groundingMetadata" in response.json()["candidates"][0]
    refused = generate(sandbox_url, TEXT_MODEL, modalities=["TEXT", "IMAGE"])
    assert error_message(refused) == (
        "Model does not support the requested response modalities: image"
    )
