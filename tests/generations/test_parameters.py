"""Thinking levels and Google Search grounding: offered where the model takes them,
refused with a message elsewhere, sent on the wire, priced and shown."""

import copy
import json

import pytest

from generations import engine, jobs, pricing
from generations.catalog import GEMINI_PRICES
from generations.models import ModelSpec
from generations.providers.base import ImageRequest
from generations.providers.gemini import build_request_body, parse_response
from tests.factories import GEMINI_FIXTURES, job_request, make_route, page_text, submit_one

pytestmark = pytest.mark.django_db


def recorded_pro_answer() -> dict:
    """The recorded Gemini 3 Pro Image answer (real wire shape, thought signatures)."""
    path = GEMINI_FIXTURES / "gemini-3-pro-image-preview.text-and-image.json"
    return copy.deepcopy(json.loads(path.read_text())["interactions"][0]["response"]["body"])


def test_a_2_1_image_thinking_high_costs_exactly_its_reported_usage():
    body = recorded_pro_answer()
    body["modelVersion"] = "gemini-nano-banana-2.1"
    body["usageMetadata"] = {
        "promptTokenCount": 20,
        "candidatesTokenCount": 1160,
        "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1120}],
        "thoughtsTokenCount": 900,
        "totalTokenCount": 2080,
    }
    usage = parse_response(body).usage
    rates = pricing.Rates(**GEMINI_PRICES["gemini-nano-banana-2.1"])
    # 20 × $1.50/M + (40 text + 900 thinking) × $7.50/M + 1120 × $30/M = $0.040680
    assert pricing.cost_micros(rates, usage, image_size="1K") == 40_680


def test_a_grounded_pro_image_adds_each_search_the_model_ran():
    body = recorded_pro_answer()
    body["candidates"][0]["groundingMetadata"] = {
        "webSearchQueries": ["Lisbon tram 28 colours", "Lisbon tram 28 route"],
        "groundingChunks": [
            {"web": {"uri": "https://example.org/tram-28", "title": "Tram 28"}},
            {"web": {"uri": "javascript:alert(1)", "title": "not a web page"}},
        ],
    }
    result = parse_response(body)
    assert result.usage.search_queries == 2
    assert result.extra["grounding"]["sources"] == [
        {"uri": "https://example.org/tram-28", "title": "Tram 28"}
    ]
    rates = pricing.Rates(**GEMINI_PRICES["gemini-3-pro-image"])
    # the recorded answer's $0.138472, plus 2 searches × $0.014
    assert pricing.cost_micros(rates, result.usage, image_size="1K") == 138_472 + 28_000


def test_the_wire_carries_the_thinking_level_and_the_search_tool():
    body = build_request_body(
        ImageRequest(
            "gemini-nano-banana-2.1", "a map", "1:8", "1K", thinking_level="high", grounding=True
        )
    )
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "high"}
    assert body["tools"] == [{"googleSearch": {}}]
    plain = build_request_body(ImageRequest("gemini-3-pro-image", "a map", "1:1", "1K"))
    assert "thinkingConfig" not in plain["generationConfig"] and "tools" not in plain


@pytest.mark.parametrize(
    "slug, params, field, message",
    [
        (
            "nano-banana-pro",
            {"thinking_level": "high"},
            "thinking_level",
            "Nano Banana Pro takes no thinking level.",
        ),
        (
            "nano-banana-2",
            {"thinking_level": "medium"},
            "thinking_level",
            "Nano Banana 2 takes the thinking levels minimal, high, not medium.",
        ),
        (
            "nano-banana-2-lite",
            {"grounding": True},
            "grounding",
            "Nano Banana 2 Lite cannot ground its images in Google Search.",
        ),
    ],
)
def test_a_parameter_the_model_does_not_take_is_refused(slug, params, field, message):
    model = ModelSpec.objects.get(slug=slug)
    with pytest.raises(jobs.SubmitError) as refused:
        jobs.validate(job_request(model, **params))
    assert (refused.value.field, refused.value.message) == (field, message)


def test_the_studio_refuses_it_too_and_changes_nothing(client, alice, sandbox_url, no_broker):
    make_route("nano-banana-pro", base_url=sandbox_url)
    client.force_login(alice)
    r = client.post(
        "/generate",
        {
            "prompt": "a fox",
            "model": "nano-banana-pro",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "thinking_level": "minimal",
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 422
    assert "Nano Banana Pro takes no thinking level." in page_text(r.content)
    assert not alice.generations.exists()


def test_grounding_raises_the_estimate_by_the_searches_it_allows(settings, sandbox_url):
    route = make_route("nano-banana-2-1", base_url=sandbox_url)
    model = route.model
    plain = jobs.estimate_per_image(model, image_size="1K", prompt_chars=40, references=0)
    grounded = jobs.estimate_per_image(
        model, image_size="1K", prompt_chars=40, references=0, grounding=True
    )
    assert grounded - plain == settings.NANOWEB_GROUNDING_ESTIMATE_QUERIES * 14_000


def test_a_grounded_thinking_job_runs_settles_and_shows_its_sources(
    client, alice, sandbox_url, no_broker
):
    make_route("nano-banana-2-1", base_url=sandbox_url)
    model = ModelSpec.objects.get(slug="nano-banana-2-1")
    job = submit_one(
        model,
        alice,
        prompt="the Lisbon tram 28",
        aspect_ratio="1:8",
        thinking_level="high",
        grounding=True,
    )
    assert job.params == {"thinking_level": "high", "grounding": True}
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    searches = job.usage["search_queries"]
    assert searches >= 1 and job.grounding["sources"]
    assert job.usage["thinking_tokens"] > 0
    assert job.actual_micros >= searches * 14_000
    client.force_login(alice)
    page = page_text(client.get(f"/images/{job.pk}").content)
    assert "Thinking High" in page and "Grounded in Google Search" in page
    assert job.grounding["sources"][0]["title"] in page
