"""The Hugging Face Space provider against Gradio's documented answers, on a mocked transport."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from generations.failures import ErrorKind
from generations.providers.base import ImageRequest, Reference, Timeouts, provider_class
from generations.providers.hf_space import (
    HFSpaceProvider,
    classify_error,
    quota_wait,
    space_error,
    sse_events,
)
from tests.generations.providers.test_fal import FakeFal, failure, reply
from tests.generations.providers.test_openai_images import image_bytes

APP = "https://black-forest-labs-flux-1-schnell.hf.space"
TOKEN = "hf_SECRETtoken0123456789abcdefABCDEF"
CALL = f"{APP}/gradio_api/call/infer"
EVENT = "f3b5c2a1d0e94c8b"
OPTIONS = {
    "space": "black-forest-labs/FLUX.1-schnell",
    "api_name": "/infer",
    "arguments": ["", 0, True, 1024, 1024, 4],
    "prompt": 0,
    "seed": 1,
    "width": 3,
    "height": 4,
    "output": 0,
}
FILE_PATH = "/tmp/gradio/359933dc8d6cfe1b022f35e2c639e6e42c97a003/image.webp"


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "black-forest-labs/FLUX.1-schnell")
    kwargs.setdefault("prompt", "an axolotl reading a newspaper")
    kwargs.setdefault("aspect_ratio", "16:9")
    kwargs.setdefault("image_size", "1K")
    return ImageRequest(**kwargs)


def provider(handler, *, key: str = TOKEN, options=None) -> HFSpaceProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return HFSpaceProvider(APP, key, Timeouts(read=5.0), client=client, options=options or OPTIONS)


def stream(*events: tuple[str, object]) -> httpx.Response:
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


def file_data(url: str | None = None) -> dict:
    """An output file as the curl guide shows it."""
    return {
        "path": FILE_PATH,
        "url": url or f"{APP}/gradio_api/file={FILE_PATH}",
        "size": None,
        "orig_name": "image.webp",
        "mime_type": None,
        "is_stream": False,
        "meta": {"_type": "gradio.FileData"},
    }


def space(final: httpx.Response, *, image: bytes | None = None, **extra) -> FakeFal:
    routes = {
        ("POST", CALL): reply(200, {"event_id": EVENT}),
        ("GET", f"{CALL}/{EVENT}"): final,
        ("GET", f"{APP}/gradio_api/file={FILE_PATH}"): httpx.Response(200, content=image or b""),
        **extra,
    }
    return FakeFal(routes)


def test_it_is_the_registered_hf_space_provider():
    assert provider_class("hf_space") is HFSpaceProvider


# --- the call -------------------------------------------------------------------------------


def test_a_call_posts_the_arguments_then_reads_the_stream_and_downloads_the_file():
    png = image_bytes()
    fake = space(
        stream(("heartbeat", None), ("generating", [None, 7]), ("complete", [file_data(), 7])),
        image=png,
    )
    result = provider(fake).generate(request())
    posted = json.loads(fake.sent[0].content)
    assert posted["data"][0] == "an axolotl reading a newspaper"
    assert posted["data"][2:] == [True, 1344, 768, 4]  # 16:9 at 1K, the fixed values kept
    assert posted["data"][1] == result.extra["seed"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake.sent)
    assert fake.sent[1].headers["accept"] == "text/event-stream"
    assert result.images[0].data == png and result.response_id == EVENT
    assert result.model_version == "black-forest-labs/FLUX.1-schnell"
    assert result.usage.total_tokens == 0


@pytest.mark.parametrize("placeholder", ["none", "anonymous", "-", " None "])
def test_a_public_space_is_called_without_a_token(placeholder):
    fake = space(stream(("complete", [file_data(), 1])), image=image_bytes())
    provider(fake, key=placeholder).generate(request())
    assert all("authorization" not in r.headers for r in fake.sent)


def test_a_path_only_output_is_fetched_from_the_file_route():
    fake = space(stream(("complete", [{"path": FILE_PATH}, 1])), image=image_bytes())
    assert provider(fake).generate(request()).images
    assert str(fake.sent[-1].url) == f"{APP}/gradio_api/file={FILE_PATH}"


def test_a_gallery_output_gives_its_first_image():
    gallery = [{"image": file_data(), "caption": None}]
    fake = space(stream(("complete", [gallery])), image=image_bytes())
    assert provider(fake).generate(request()).images


def test_the_reference_is_uploaded_and_passed_as_file_data():
    png = image_bytes()
    options = {"api_name": "edit", "arguments": [None, "", 0], "image": 0, "prompt": 1}
    call = f"{APP}/gradio_api/call/edit"
    fake = FakeFal(
        {
            ("POST", f"{APP}/gradio_api/upload"): reply(200, ["/tmp/gradio/abc/reference.png"]),
            ("POST", call): reply(200, {"event_id": EVENT}),
            ("GET", f"{call}/{EVENT}"): stream(("complete", [file_data()])),
            ("GET", f"{APP}/gradio_api/file={FILE_PATH}"): httpx.Response(200, content=png),
        }
    )
    req = request(references=(Reference(png, "image/png"),))
    provider(fake, options=options).generate(req)
    upload = fake.sent[0]
    assert b'name="files"; filename="reference.png"' in upload.content
    assert json.loads(fake.sent[1].content)["data"][0] == {
        "path": "/tmp/gradio/abc/reference.png",
        "orig_name": "reference.png",
        "meta": {"_type": "gradio.FileData"},
    }


def test_a_gradio_4_space_is_called_without_the_api_prefix():
    options = {**OPTIONS, "api_prefix": ""}
    fake = FakeFal(
        {
            ("POST", f"{APP}/call/infer"): reply(200, {"event_id": EVENT}),
            ("GET", f"{APP}/call/infer/{EVENT}"): stream(("complete", [file_data()])),
            ("GET", f"{APP}/gradio_api/file={FILE_PATH}"): httpx.Response(
                200, content=image_bytes()
            ),
        }
    )
    assert provider(fake, options=options).generate(request()).images


def test_events_are_parsed_as_the_stream_sends_them():
    lines = ["event: heartbeat", "data: null", "", "event: complete", 'data: ["a"]', ""]
    assert list(sse_events(lines)) == [("heartbeat", "null"), ("complete", '["a"]')]


# --- the admin's options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"prompt": 0}, "api_name"),
        ({"api_name": "/infer"}, "options.prompt"),
        ({"api_name": "/infer", "prompt": "first"}, 'not "first"'),
        ({"api_name": "/infer", "prompt": 0, "arguments": "x"}, "options.arguments"),
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(options, says):
    fake = FakeFal({})
    err = failure(lambda: provider(fake, options=options).generate(request()))
    assert err.kind == ErrorKind.REFUSED and says in err.message
    assert fake.sent == []


def test_a_reference_for_a_space_without_an_image_input_is_refused():
    err = failure(
        lambda: provider(FakeFal({})).generate(
            request(references=(Reference(image_bytes(), "image/png"),))
        )
    )
    assert err.kind == ErrorKind.PERMANENT


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (
            "You have exceeded your GPU quota (46s left vs. 60s requested). Sign-up on Hugging "
            "Face to get more quotas or retry in 0:09:48.",
            588,
        ),
        (
            "You have exceeded your GPU quota (59s left vs. 60s requested). "
            "Please retry in 0:00:56",
            56,
        ),
        (
            "You have exceeded your GPU quota (286s left vs 300s requested). Signup on Huggingface "
            "or try again in 2 days.",
            172800,
        ),
        (
            "You have exceeded your GPU quota (60s requested vs. 56s left). <a href="
            '"https://huggingface.co/join">Create a free account</a> to get more usage quota.',
            None,
        ),
    ],
)
def test_zerogpu_quota_errors_rest_the_key_until_the_wait_they_name(text, seconds):
    fake = space(stream(("error", {"error": text, "title": "ZeroGPU quota exceeded"})))
    err = failure(lambda: provider(fake).generate(request()))
    assert err.kind == ErrorKind.KEY_EXHAUSTED
    assert err.retry_after == seconds and quota_wait(text) == seconds
    assert not err.may_have_been_billed


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"error": None}, ErrorKind.TRANSIENT),  # the Space hides its errors
        ("Connection errored out.", ErrorKind.TRANSIENT),  # an unexpected error, as a string
        (
            {"error": "No GPU is currently available for you after 60s", "title": "ZeroGPU"},
            ErrorKind.TRANSIENT,
        ),
        ({"error": "ZeroGPU illegal duration"}, ErrorKind.REFUSED),
        ({"error": "NSFW content detected.", "title": "Error"}, ErrorKind.BLOCKED),
        ({"error": "Prompt is too long", "title": "Error"}, ErrorKind.PERMANENT),
    ],
)
def test_error_events_are_classified_by_what_the_space_said(data, kind):
    assert space_error(json.dumps(data)).kind == kind


def test_a_stream_that_ends_without_an_answer_may_have_been_billed():
    err = failure(lambda: provider(space(stream(("heartbeat", None)))).generate(request()))
    assert err.kind == ErrorKind.TRANSIENT and err.may_have_been_billed


def test_a_complete_event_without_an_image_is_no_image():
    err = failure(lambda: provider(space(stream(("complete", [None, 3])))).generate(request()))
    assert err.kind == ErrorKind.NO_IMAGE


def test_damaged_answers_are_corrupt():
    body = b'event: complete\ndata: [{"path": \n\n'
    err = failure(lambda: provider(space(httpx.Response(200, content=body))).generate(request()))
    assert err.kind == ErrorKind.CORRUPT
    fake = space(stream(("complete", [file_data()])), image=b"\x89PNG\r\n\x1a\nshort")
    assert failure(lambda: provider(fake).generate(request())).kind == ErrorKind.CORRUPT


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry_after"),
    [
        (
            401,
            {"error": "Invalid credentials in Authorization header"},
            {},
            ErrorKind.KEY_INVALID,
            None,
        ),
        (404, b"Not Found", {}, ErrorKind.MODEL_GONE, None),
        (429, b"Too Many Requests", {"retry-after": "30"}, ErrorKind.RATE_LIMITED, 30.0),
        (503, b"<html><h1>This Space is sleeping</h1></html>", {}, ErrorKind.TRANSIENT, None),
        (503, {"detail": "Queue is full"}, {}, ErrorKind.TRANSIENT, None),
        (500, b"Internal Server Error", {}, ErrorKind.TRANSIENT, None),
        (504, b"Gateway Timeout", {}, ErrorKind.SLOW, None),
        (
            422,
            {"detail": [{"type": "missing", "loc": ["body", "data"]}]},
            {},
            ErrorKind.PERMANENT,
            None,
        ),
    ],
)
def test_http_failures_at_the_call_are_classified(status, body, headers, kind, retry_after):
    fake = FakeFal({("POST", CALL): reply(status, body, headers)})
    err = failure(lambda: provider(fake).generate(request()))
    assert (err.kind, err.http_status, err.retry_after) == (kind, status, retry_after)


def test_a_lost_event_is_transient_not_a_gone_space():
    assert classify_error(404, b"Not Found", {}, "stream").kind == ErrorKind.TRANSIENT


def test_the_token_never_shows_in_errors_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    said = f"Invalid token {TOKEN}"
    fake = FakeFal({("POST", CALL): reply(401, {"error": said})})
    err = failure(lambda: provider(fake).generate(request()))
    assert TOKEN not in err.message and TOKEN not in err.detail and "[key]" in err.detail
    logging.getLogger("test").info("attempt failed: %s %s", err.message, err.detail)
    assert TOKEN not in caplog.text


# --- the key check ---------------------------------------------------------------------------


def test_connection_reads_the_endpoint_schema():
    params = [{"label": str(i)} for i in range(6)]
    info = {"named_endpoints": {"/infer": {"parameters": params, "returns": []}}}
    fake = FakeFal({("GET", f"{APP}/gradio_api/info"): reply(200, info)})
    assert "6 arguments" in provider(fake).test_connection()


def test_connection_names_the_endpoints_when_the_api_name_is_wrong():
    info = {"named_endpoints": {"/generate": {"parameters": []}}}
    fake = FakeFal({("GET", f"{APP}/gradio_api/info"): reply(200, info)})
    err = failure(lambda: provider(fake).test_connection())
    assert err.kind == ErrorKind.REFUSED and "/generate" in err.message
