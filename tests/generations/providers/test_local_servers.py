"""Self-hosted servers with an OpenAI-compatible images endpoint (vLLM-Omni, LocalAI),
served by the ``openai`` provider kind: against the sandbox acting as one, and on their
documented answers (vllm-project/vllm-omni entrypoints/openai/api_server.py and
protocol/images.py; mudler/LocalAI core/http/endpoints/openai/image.go)."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from generations.failures import ErrorKind
from generations.providers.base import ImageRequest, Reference, Timeouts
from generations.providers.openai_images import OpenAIImagesProvider
from generations.sandbox.server import running_sandbox
from tests.generations.providers.test_fal import FakeFal, failure, reply
from tests.generations.providers.test_openai_images import image_bytes

VLLM = "http://gpu-box:8000/v1"
LOCALAI = "http://localai:8080/v1"


def request(model: str = "Qwen/Qwen-Image", **kwargs) -> ImageRequest:
    kwargs.setdefault("prompt", "a dragon flying over mountains")
    kwargs.setdefault("aspect_ratio", "1:1")
    return ImageRequest(upstream_model=model, **kwargs)


def provider(handler, base: str) -> OpenAIImagesProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenAIImagesProvider(base, "none", Timeouts(read=5.0), client=client)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox() as url:
        yield url


# --- against the sandbox, acting as the server -----------------------------------------------


@pytest.mark.parametrize(
    ("model", "ratio", "size"),
    [
        ("Qwen/Qwen-Image", "1:1", (1024, 1024)),
        ("Tongyi-MAI/Z-Image-Turbo", "16:9", (1536, 1024)),
        ("stablediffusion", "9:16", (1024, 1536)),  # a LocalAI model name
    ],
)
def test_a_local_model_makes_an_image_through_the_openai_kind(sandbox, model, ratio, size):
    server = OpenAIImagesProvider(f"{sandbox}/v1", "none", Timeouts(read=20.0))
    result = server.generate(request(model, aspect_ratio=ratio, image_size=None))
    picture = Image.open(io.BytesIO(result.images[0].data))
    assert picture.size == size and result.images[0].mime_type == "image/png"


# --- what goes out ---------------------------------------------------------------------------


def test_the_request_carries_only_fields_both_servers_read():
    fake = FakeFal(
        {
            ("POST", f"{VLLM}/images/generations"): reply(
                200, {"created": 1, "data": [{"b64_json": b64(image_bytes())}]}
            )
        }
    )
    provider(fake, VLLM).generate(request(image_size="2K", aspect_ratio="3:2"))
    sent = json.loads(fake.sent[0].content)
    # vLLM-Omni: size any "WxH", response_format only b64_json (its default, so not sent),
    # unknown fields ignored. LocalAI: size must contain "x" (else 512x512), n defaults to 1.
    assert sent == {
        "model": "Qwen/Qwen-Image",
        "prompt": "a dragon flying over mountains",
        "n": 1,
        "size": "1536x1024",
    }
    assert fake.sent[0].headers["authorization"] == "Bearer none"  # ignored without --api-key


# --- vLLM-Omni's answers ------------------------------------------------------------------------


def test_vllm_omni_s_answer_without_usage_is_an_image_with_no_tokens():
    png = image_bytes()
    body = {
        "created": 1735350000,
        "data": [{"b64_json": b64(png), "url": None, "revised_prompt": None}],
    }
    fake = FakeFal({("POST", f"{VLLM}/images/generations"): reply(200, body)})
    result = provider(fake, VLLM).generate(request())
    assert result.images[0].data == png and result.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            {"detail": "Invalid size format: '1024'. Expected format: 'WIDTHxHEIGHT'"},
            ErrorKind.PERMANENT,
        ),
        (
            422,
            {
                "detail": [
                    {
                        "type": "value_error",
                        "loc": ["body", "response_format"],
                        "msg": "Value error, Only 'b64_json' response format is supported",
                    }
                ]
            },
            ErrorKind.PERMANENT,
        ),
        (
            503,
            {
                "detail": "Multi-stage engine not initialized. "
                "Start server with a multi-stage omni model."
            },
            ErrorKind.TRANSIENT,
        ),
        (500, {"detail": "Image generation failed: CUDA out of memory"}, ErrorKind.TRANSIENT),
    ],
)
def test_vllm_omni_s_fastapi_errors_are_classified(status, body, kind):
    fake = FakeFal({("POST", f"{VLLM}/images/generations"): reply(status, body)})
    err = failure(lambda: provider(fake, VLLM).generate(request()))
    assert err.kind == kind
    # FastAPI's {"detail": …} is no OpenAI envelope: the reason reaches the admin's detail,
    # the user reads the generic sentence (see the issue 17 report for the change).
    said = body["detail"] if isinstance(body["detail"], str) else body["detail"][0]["msg"]
    assert said[:40] in err.detail


# --- LocalAI's answers ----------------------------------------------------------------------------


def test_localai_s_inline_answer_with_zero_usage_is_an_image():
    png = image_bytes()
    body = {
        "id": "5b7c",
        "created": 1,
        "data": [{"index": 0, "b64_json": b64(png)}],
        "usage": {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "input_tokens_details": {"text_tokens": 0, "image_tokens": 0},
        },
    }
    fake = FakeFal({("POST", f"{LOCALAI}/images/generations"): reply(200, body)})
    result = provider(fake, LOCALAI).generate(request("stablediffusion"))
    assert result.images[0].data == png and result.usage.total_tokens == 0


def test_localai_s_default_url_answer_on_its_own_origin_is_fetched():
    png = image_bytes()
    url = "http://localai:8080/generated-images/b641234567.png"
    fake = FakeFal(
        {
            ("POST", f"{LOCALAI}/images/generations"): reply(
                200, {"created": 1, "data": [{"url": url}]}
            ),
            ("GET", url): httpx.Response(200, content=png),
        }
    )
    assert provider(fake, LOCALAI).generate(request("stablediffusion")).images[0].data == png


def test_a_reference_sent_to_a_server_without_edits_fails_without_retiring_the_route():
    # LocalAI serves /v1/images/generations and /v1/images/inpainting, no /v1/images/edits.
    fake = FakeFal(
        {
            ("POST", f"{LOCALAI}/images/edits"): reply(
                404, {"error": {"code": 404, "message": "Not Found"}}
            )
        }
    )
    req = request("stablediffusion", references=(Reference(image_bytes(), "image/png"),))
    err = failure(lambda: provider(fake, LOCALAI).generate(req))
    assert err.kind == ErrorKind.PERMANENT
