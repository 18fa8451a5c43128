"""OpenAI- and Gemini-shaped requests: the size table, and every refusal in the right envelope."""

import base64

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import tokens
from accounts.models import LedgerEntry
from generations import engine
from generations.api import mapping, waiting
from generations.api.errors import ApiError
from generations.models import Generation, ModelSpec
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "slug, size, quality, expected",
    [
        ("nano-banana-pro", "1024x1024", "auto", ("1:1", "1K")),
        ("nano-banana-pro", "1536x1024", "medium", ("3:2", "1K")),
        ("nano-banana-pro", "1024x1536", "high", ("2:3", "2K")),
        ("nano-banana-pro", "1792x1024", "standard", ("16:9", "2K")),
        ("nano-banana-pro", "4096x4096", "auto", ("1:1", "4K")),
        ("nano-banana-pro", "auto", "hd", ("1:1", "2K")),
        ("nano-banana-pro", "2560x1080", "low", ("21:9", "2K")),
        ("nano-banana", "1024x1024", "auto", ("1:1", None)),
        ("nano-banana", "1080x1350", "low", ("4:5", None)),
    ],
)
def test_the_size_table(slug, size, quality, expected):
    shape = mapping.openai_shape(ModelSpec.objects.get(slug=slug), size, quality)
    assert (shape.aspect_ratio, shape.image_size) == expected


@pytest.mark.parametrize(
    "slug, size, quality, param",
    [
        ("nano-banana", "2048x2048", "auto", "size"),
        ("nano-banana", "1024x1024", "hd", "quality"),
        ("nano-banana-pro", "10x10", "auto", "size"),
        ("nano-banana-pro", "1024*1024", "auto", "size"),
        ("nano-banana-pro", "1024x1024", "ultra", "quality"),
        ("nano-banana-pro", "64x1536", "auto", "size"),  # 1:24, no ratio it makes
        ("nano-banana-2", "64x1536", "auto", "size"),  # nor 1:8, the tallest of this one
        ("nano-banana-pro", "1024x1080", "auto", "size"),  # 5.5 % from 1:1, 16 % from 4:5
        ("nano-banana", "4096x1024", "auto", "size"),
    ],
)
def test_what_a_model_cannot_do_is_refused_not_downgraded(slug, size, quality, param):
    with pytest.raises(ApiError) as refused:
        mapping.openai_shape(ModelSpec.objects.get(slug=slug), size, quality)
    assert refused.value.status == 400 and refused.value.param == param


@pytest.mark.parametrize(
    "slug, size, ratio",
    [
        ("nano-banana-pro", "1024x1075", "1:1"),  # 4.98 % off: still 1:1
        ("nano-banana-pro", "1075x1024", "1:1"),
        ("nano-banana-2", "128x1024", "1:8"),
        ("nano-banana-2", "4096x1024", "4:1"),
        ("nano-banana-pro", "1024x1792", "9:16"),  # dall-e-3's portrait, 1.6 % off
    ],
)
def test_a_size_within_five_percent_of_a_ratio_is_made_at_that_ratio(slug, size, ratio):
    shape = mapping.openai_shape(ModelSpec.objects.get(slug=slug), size, "auto")
    assert shape.aspect_ratio == ratio


def test_a_size_too_far_from_every_ratio_says_which_ratios_there_are(client, bearer):
    body = {"model": "sandbox", "prompt": "x", "size": "64x1536"}
    r = post_json(client, "/v1/images/generations", body, bearer)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("size", "unsupported_value")
    assert "1:8" in error["message"] and "aspect_ratio" in error["message"]
    assert not Generation.objects.exists() and not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"stream": True}, "stream"),
        ({"stream": True, "partial_images": 2}, "stream"),
        ({"partial_images": 1}, "partial_images"),
    ],
)
def test_streaming_is_refused_before_anything_is_reserved(client, bearer, extra, param):
    r = post_json(
        client, "/v1/images/generations", {"model": "sandbox", "prompt": "x", **extra}, bearer
    )
    assert r.status_code == 400, r.content
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (param, "unsupported_value")
    assert not Generation.objects.exists() and not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    "extra, param",
    [({"stream": "true"}, "stream"), ({"partial_images": "3"}, "partial_images")],
)
def test_streamed_edits_are_refused_before_anything_is_reserved(client, bearer, extra, param):
    image = SimpleUploadedFile("a.png", png_bytes(64, 64), content_type="image/png")
    data = {"prompt": "x", "model": "sandbox", "image": image, **extra}
    r = client.post("/v1/images/edits", data, **bearer)
    assert r.status_code == 400, r.content
    assert r.json()["error"]["param"] == param
    assert not Generation.objects.exists() and not LedgerEntry.objects.exists()


def test_stream_false_is_no_streaming(client, bearer, settings):
    settings.NANOWEB_API_WAIT_SECONDS = 0.2
    body = {"model": "sandbox", "prompt": "x", "stream": False, "partial_images": 0}
    r = post_json(client, "/v1/images/generations", body, bearer)
    assert r.status_code == 504  # admitted and waited for (no worker runs in this test)
    assert Generation.objects.count() == 1


@pytest.mark.parametrize(
    "method, path, headers, status, family",
    [
        ("get", "/v1/nothing-here", "bearer", 404, "openai"),
        ("get", "/v1/images/variations", "bearer", 404, "openai"),
        ("get", "/v1", "bearer", 404, "openai"),
        ("get", "/api/v1/nothing-here", "bearer", 404, "openai"),
        ("get", "/v1beta/nothing-here", "google", 404, "gemini"),
        ("get", "/v1beta/tunedModels/x", "google", 404, "gemini"),
        ("post", "/v1beta/models/sandbox:countTokens", "google", 404, "gemini"),
        ("post", "/v1/models/sandbox:embedContent", "google", 404, "gemini"),
        ("get", "/v1/files", "google", 404, "gemini"),  # google-genai's default version
        ("get", "/v1alpha/nothing-here", None, 404, "gemini"),
        ("get", "/v1/images/generations", "bearer", 405, "openai"),
        ("delete", "/v1/models/sandbox", "bearer", 405, "openai"),
        ("put", "/api/v1/generations", "bearer", 405, "openai"),
        ("get", "/v1beta/models/sandbox:generateContent", "google", 405, "gemini"),
        ("post", "/v1beta/models", "google", 405, "gemini"),
        ("delete", "/v1beta/models/sandbox", "google", 405, "gemini"),
        ("post", "/v1/models", "google", 405, "gemini"),
    ],
)
def test_unknown_paths_and_wrong_methods_answer_in_the_apis_envelope(
    client, alice, bearer, method, path, headers, status, family
):
    key = bearer["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    extra = {"bearer": bearer, "google": {"HTTP_X_GOOG_API_KEY": key}, None: {}}[headers]
    r = getattr(client, method)(path, **extra)
    assert r.status_code == status, r.content
    assert r["Content-Type"] == "application/json"
    error = r.json()["error"]
    assert error["message"]
    if family == "openai":
        assert error["type"] == "invalid_request_error" and "param" in error
    else:
        assert error["code"] == status and error["status"] in ("NOT_FOUND", "UNIMPLEMENTED")
    if status == 405:
        assert r["Allow"] and r["Allow"].split(", ")[0] in error["message"]


@pytest.fixture
def bearer(alice, sandbox_model, no_broker):
    return {"HTTP_AUTHORIZATION": f"Bearer {tokens.create(alice, 't').secret}"}


def post_json(client, path, body, headers):
    return client.post(path, body, content_type="application/json", **headers)


@pytest.mark.parametrize(
    "body, status, param, code",
    [
        ({"model": "sandbox"}, 400, "prompt", "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "x"}, 404, "model", "model_not_found"),
        ({"model": "sandbox", "prompt": "x", "n": 11}, 400, "n", "invalid_value"),
        ({"model": "sandbox", "prompt": "x", "size": "huge"}, 400, "size", "invalid_value"),
        (
            {"model": "sandbox", "prompt": "x", "response_format": "gif"},
            400,
            "response_format",
            "invalid_value",
        ),
        (
            {"model": "sandbox", "prompt": "x", "background": "transparent"},
            400,
            "background",
            "unsupported_value",
        ),
        (
            {"model": "sandbox", "prompt": "x", "aspect_ratio": "5:1"},
            400,
            "aspect_ratio",
            "invalid_value",
        ),
    ],
)
def test_openai_generation_refusals(client, bearer, body, status, param, code):
    r = post_json(client, "/v1/images/generations", body, bearer)
    assert r.status_code == status, r.content
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (param, code) and error["type"] and error["message"]
    assert r["x-should-retry"] == "false"
    assert not Generation.objects.exists()


def test_a_body_that_is_not_json_is_a_400(client, bearer):
    r = client.post("/v1/images/generations", "{oops", content_type="application/json", **bearer)
    assert r.status_code == 400 and "error" in r.json()


def test_edits_refuse_masks_missing_and_too_many_images(client, bearer):
    png = png_bytes(64, 64)

    def upload(name):
        from django.core.files.uploadedfile import SimpleUploadedFile

        return SimpleUploadedFile(name, png, content_type="image/png")

    cases = [
        ({"prompt": "x", "model": "sandbox"}, "image"),
        (
            {"prompt": "x", "model": "sandbox", "image": upload("a.png"), "mask": upload("m.png")},
            "mask",
        ),
        (
            {"prompt": "x", "model": "sandbox", "image[]": [upload(f"{i}.png") for i in range(15)]},
            "image",
        ),
        (
            {
                "prompt": "x",
                "model": "sandbox",
                "image": __import__(
                    "django.core.files.uploadedfile", fromlist=["x"]
                ).SimpleUploadedFile("evil.png", b"<html>hi</html>", content_type="image/png"),
            },
            "image",
        ),
    ]
    for data, param in cases:
        r = client.post("/v1/images/edits", data, **bearer)
        assert r.status_code == 400, (param, r.content)
        assert r.json()["error"]["param"] == param
    assert not Generation.objects.exists()


def test_an_image_over_the_byte_limit_is_a_413_naming_the_limit(client, bearer, settings):
    settings.NANOWEB_MAX_UPLOAD_BYTES = 1000
    big = SimpleUploadedFile(
        "big.png", png_bytes(400, 400, (9, 99, 199)) + b"\0" * 2000, content_type="image/png"
    )
    r = client.post("/v1/images/edits", {"prompt": "x", "model": "sandbox", "image": big}, **bearer)
    assert r.status_code == 413
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("image", "invalid_image")
    assert "the limit is 1000 B" in error["message"] or "the limit is" in error["message"]
    assert not Generation.objects.exists()


def test_over_quota_is_a_429_naming_the_limit_and_when_it_resets(client, bearer, alice):
    alice.monthly_budget_micros = 1
    alice.save()
    r = post_json(client, "/v1/images/generations", {"model": "sandbox", "prompt": "x"}, bearer)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "insufficient_quota"
    assert "Monthly budget reached" in r.json()["error"]["message"]
    assert int(r["Retry-After"]) > 0 and r["x-should-retry"] == "false"
    assert not LedgerEntry.objects.exists()


def test_waiting_too_long_names_the_jobs_which_carry_on(client, bearer, settings):
    settings.NANOWEB_API_WAIT_SECONDS = 0.3
    r = post_json(
        client, "/v1/images/generations", {"model": "sandbox", "prompt": "a fox", "n": 2}, bearer
    )
    assert r.status_code == 504
    error = r.json()["error"]
    jobs = Generation.objects.all()
    assert sorted(error["job_ids"]) == sorted(str(j.pk) for j in jobs)
    assert "will appear in your gallery" in error["message"]
    assert {j.status for j in jobs} == {"queued"}  # not cancelled: the worker will finish them


def gemini(client, model, body, key):
    return client.post(
        f"/v1beta/models/{model}:generateContent",
        body,
        content_type="application/json",
        HTTP_X_GOOG_API_KEY=key,
    )


@pytest.mark.parametrize(
    "body, status, grpc, field",
    [
        ({}, 400, "INVALID_ARGUMENT", "contents"),
        ({"contents": [{"role": "user", "parts": []}]}, 400, "INVALID_ARGUMENT", "contents"),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"responseModalities": ["TEXT"]},
            },
            400,
            "INVALID_ARGUMENT",
            "generationConfig.responseModalities",
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"imageConfig": {"aspectRatio": "7:1"}},
            },
            400,
            "INVALID_ARGUMENT",
            "generationConfig.imageConfig.aspectRatio",
        ),
        (
            {
                "contents": [
                    {
                        "parts": [
                            {"text": "x"},
                            {"inline_data": {"mime_type": "image/png", "data": "%%%"}},
                        ]
                    }
                ]
            },
            400,
            "INVALID_ARGUMENT",
            "contents.parts[1].inlineData",
        ),
        ({"contents": "just text"}, 400, "INVALID_ARGUMENT", "contents"),
    ],
)
def test_gemini_refusals_use_the_google_rpc_envelope(
    client, alice, sandbox_model, no_broker, body, status, grpc, field
):
    key = tokens.create(alice, "g").secret
    r = gemini(client, "sandbox", body, key)
    assert r.status_code == status, r.content
    error = r.json()["error"]
    assert error["status"] == grpc and error["code"] == status
    assert error["details"][0]["fieldViolations"][0]["field"] == field
    assert not Generation.objects.exists()


def test_gemini_quota_errors_carry_retry_info(client, alice, sandbox_model, no_broker):
    alice.daily_image_limit = 0
    alice.save()
    r = gemini(
        client,
        "gemini-3.1-flash-image",
        {"contents": [{"parts": [{"text": "a fox"}]}]},
        tokens.create(alice, "g").secret,
    )
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and "Daily image limit" in error["message"]
    retry = [d for d in error["details"] if d["@type"].endswith("RetryInfo")][0]
    assert retry["retryDelay"].endswith("s") and int(retry["retryDelay"][:-1]) > 0


def test_gemini_auth_and_unknown_models(client, alice, sandbox_model, no_broker):
    body = {"contents": [{"parts": [{"text": "a fox"}]}]}
    assert gemini(client, "sandbox", body, "nw_nope").json()["error"]["status"] == "UNAUTHENTICATED"
    r = gemini(client, "imagen-4", body, tokens.create(alice, "g").secret)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    raw = tokens.create(alice, "q").secret
    r = client.post(
        f"/v1beta/models/sandbox:generateContent?key={raw}",
        "{nope",
        content_type="application/json",
    )
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_gemini_names_the_model_that_really_ran_when_asked_by_alias(
    client, alice, sandbox_model, no_broker, monkeypatch
):
    """A shut-down preview id (an alias) runs the model's route: ``modelVersion`` names
    the upstream id that ran, not the name the client sent."""
    sandbox_model.aliases = ["gemini-sandbox-preview"]
    sandbox_model.save()

    async def run_inline(ids, timeout=None):
        for pk in ids:
            await sync_to_async(engine.run_generation)(pk)
        return True

    monkeypatch.setattr(waiting, "wait_for", run_inline)
    r = gemini(
        client,
        "gemini-sandbox-preview",
        {"contents": [{"parts": [{"text": "a fox"}]}]},
        tokens.create(alice, "g").secret,
    )
    assert r.status_code == 200, r.content
    ran = Generation.objects.get()
    assert ran.status == Generation.SUCCEEDED and ran.model == sandbox_model
    assert r.json()["modelVersion"] == ran.route.upstream_model == "gemini-3.1-flash-image"


def test_gemini_takes_snake_case_and_times_out_in_its_own_envelope(
    client, alice, sandbox_model, no_broker, settings
):
    settings.NANOWEB_API_WAIT_SECONDS = 0.3
    png = base64.b64encode(png_bytes(32, 32)).decode()
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "the same in winter"},
                    {"inline_data": {"mime_type": "image/png", "data": png}},
                ],
            }
        ],
        "generation_config": {
            "response_modalities": ["IMAGE"],
            "image_config": {"aspect_ratio": "3:4", "image_size": "2K"},
        },
    }
    r = gemini(client, "sandbox", body, tokens.create(alice, "g").secret)
    assert r.status_code == 504 and r.json()["error"]["status"] == "DEADLINE_EXCEEDED"
    job = Generation.objects.get()
    assert (job.aspect_ratio, job.image_size, job.references.count()) == ("3:4", "2K", 1)
    assert str(job.pk) in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "kind, status, code",
    [
        ("blocked", 400, "moderation_blocked"),
        ("permanent", 400, "permanent"),
        ("no_image", 422, "no_image"),
        ("transient", 503, "upstream_unavailable"),
        ("deadline", 503, "upstream_unavailable"),
        ("not_saved", 503, "storage_unavailable"),
    ],
)
def test_a_job_without_an_image_answers_with_its_reason_and_refund(
    alice, sandbox_model, no_broker, kind, status, code
):
    from generations import engine
    from generations.api import results
    from tests.factories import submit_one

    job = submit_one(sandbox_model, alice)
    engine.fail(job, kind, "What the engine saw.")
    job.refresh_from_db()
    error = results.failure([job])
    assert (error.status, error.code) == (status, code)
    assert error.message.startswith(job.failure_title) and "Nothing was charged." in error.message
    assert error.extra["job_ids"] == [str(job.pk)]


def test_gemini_takes_thinking_and_search_where_the_model_does(
    client, alice, sandbox_url, no_broker, settings
):
    from tests.factories import make_route

    settings.NANOWEB_API_WAIT_SECONDS = 0.3  # no worker here: the admitted job just waits
    make_route("nano-banana-2-1", base_url=sandbox_url)
    make_route("nano-banana-2-lite", base_url=sandbox_url)
    key = tokens.create(alice, "g").secret
    body = {
        "contents": [{"parts": [{"text": "a tram"}]}],
        "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}},
        "tools": [{"googleSearch": {}}],
    }
    lite = gemini(client, "gemini-3.1-flash-lite-image", body, key)
    assert lite.status_code == 400
    assert lite.json()["error"]["details"][0]["fieldViolations"][0]["field"] == "tools"
    no_tool = gemini(
        client, "gemini-nano-banana-2.1", {**body, "tools": [{"codeExecution": {}}]}, key
    )
    assert no_tool.status_code == 400 and "googleSearch" in no_tool.json()["error"]["message"]
    assert not Generation.objects.exists()
    admitted = gemini(client, "gemini-nano-banana-2.1", body, key)
    assert admitted.status_code == 504  # still being made: nothing is lost
    job = Generation.objects.get()
    assert job.params == {"thinking_level": "high", "grounding": True}


def test_the_api_answers_in_english_whatever_the_caller_reads(client, bearer, alice):
    """A script on a Chinese machine (Accept-Language: zh-CN), or a person who chose
    Chinese for the studio, still gets the API's messages in English."""
    alice.monthly_budget_micros = 1
    alice.language = "zh-hans"
    alice.save()
    r = client.post(
        "/v1/images/generations",
        {"model": "sandbox", "prompt": "x"},
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9",
        **bearer,
    )
    assert r.status_code == 429 and r["Content-Language"] == "en"
    assert "Monthly budget reached" in r.json()["error"]["message"]
    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert page["Content-Language"] == "zh-hans"
